//! The catalog: every case, what it checks (statement ids per version, level, the capabilities it
//! needs) and how it runs. A case is a YAML scenario where that fits (files under `cases/`,
//! embedded in the crate at build time, in folders named after the spec's sections) or probe code
//! where it does not ([`crate::probes`]: sizes the broker announced, malformed bytes, timing).
//!
//! Ids are stable: a case's statement id for the version (its first) and its short name, e.g.
//! `MQTT-3.1.2-22/silent-client-closed` in 5.0 and `MQTT-3.1.2-24/silent-client-closed` in
//! 3.1.1; never a running number.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use mqtt_protocol::ProtocolVersion;
use mqtt_scenarios::load::{load_str, LoadErrors};
use mqtt_scenarios::scenario::{parse_version, version_name, Capability, CaseLevel, Phase, Scenario, Statement};

use crate::context::{Context, Failure, Finding};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/cases.rs"));
}

/// What a probe case runs: it gets a context and says pass, informational, not applicable, or
/// fail with the evidence.
pub type ProbeFn = fn(Context) -> Pin<Box<dyn Future<Output = Result<Finding, Failure>>>>;

/// How a case runs.
#[derive(Clone)]
pub enum Body {
    Scenario(Box<Scenario>),
    Probe(ProbeFn),
}

/// One case of the catalog.
#[derive(Clone)]
pub struct Case {
    /// The short name, unique in the catalog.
    pub name: String,
    /// The spec section it belongs to, e.g. `3.1.2`.
    pub section: String,
    /// One or two sentences: what it checks.
    pub about: String,
    pub versions: Vec<ProtocolVersion>,
    pub statements: Vec<Statement>,
    pub level: CaseLevel,
    pub needs: BTreeSet<Capability>,
    pub phase: Phase,
    /// Planted bugs of the reference broker this case must catch.
    pub kills: Vec<String>,
    pub body: Body,
}

/// A probe case as the code declares it.
pub struct ProbeCase {
    pub name: &'static str,
    pub about: &'static str,
    /// `"5.0"`, `"3.1.1"`.
    pub versions: &'static [&'static str],
    /// `"MQTT-3.1.2-22"` (every version of the case) or `"5.0:MQTT-3.1.2-22"`.
    pub statements: &'static [&'static str],
    pub level: CaseLevel,
    pub needs: &'static [Capability],
    pub phase: Phase,
    pub kills: &'static [&'static str],
    pub run: ProbeFn,
}

impl Case {
    /// The statement ids it cites for `version`.
    pub fn statements_for(&self, version: ProtocolVersion) -> Vec<String> {
        self.statements
            .iter()
            .filter(|statement| statement.version.is_none_or(|only| only == version))
            .map(|statement| statement.id.clone())
            .collect()
    }

    /// Its id in `version`: its first statement there, and its name.
    pub fn id(&self, version: ProtocolVersion) -> String {
        if self.section == crate::robustness::SECTION {
            return format!("{}/{}", self.section, self.name);
        }
        match self.statements_for(version).first() {
            Some(statement) => format!("{statement}/{}", self.name),
            None => format!("MQTT-{}/{}", self.section, self.name),
        }
    }

    /// Whether `pattern` (of `--only` or `--skip`) selects this case in `version`: a statement
    /// id or its prefix up to a `.` or `-` (`MQTT-3.1` is MQTT-3.1.x, not MQTT-3.10.x),
    /// optionally for one version (`5.0:MQTT-3.1.2-24`); a section (`3.3`); the name or the id.
    pub fn selected_by(&self, version: ProtocolVersion, pattern: &str) -> bool {
        let (pattern, only) = match pattern.split_once(':') {
            Some((version_text, rest)) => match parse_version(version_text) {
                Some(only) => (rest, Some(only)),
                None => (pattern, None),
            },
            None => (pattern, None),
        };
        if only.is_some_and(|only| only != version) {
            return false;
        }
        if pattern.contains('/') {
            // A whole id: `MQTT-3.1.2-22/silent-client-closed`.
            return self.id(version) == pattern;
        }
        let prefix_of = |text: &str| {
            text == pattern
                || text
                    .strip_prefix(pattern)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
        };
        if pattern.starts_with("MQTT-") {
            return self.statements_for(version).iter().any(|id| prefix_of(id));
        }
        if pattern.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return prefix_of(&self.section)
                || self
                    .statements_for(version)
                    .iter()
                    .any(|id| section_of(id).is_some_and(prefix_of));
        }
        self.name == pattern || self.id(version) == pattern
    }
}

/// `3.1.2` for `MQTT-3.1.2-24`.
pub fn section_of(id: &str) -> Option<&str> {
    id.strip_prefix("MQTT-")?.rsplit_once('-').map(|(section, _)| section)
}

fn statement(text: &str) -> Statement {
    match text.split_once(':') {
        Some((version, id)) => Statement {
            version: parse_version(version),
            id: id.to_owned(),
        },
        None => Statement {
            version: None,
            id: text.to_owned(),
        },
    }
}

impl From<&ProbeCase> for Case {
    fn from(probe: &ProbeCase) -> Case {
        let statements: Vec<Statement> = probe.statements.iter().map(|text| statement(text)).collect();
        let section = statements
            .first()
            .and_then(|statement| section_of(&statement.id))
            .unwrap_or("0")
            .to_owned();
        Case {
            name: probe.name.to_owned(),
            section,
            about: probe.about.to_owned(),
            versions: probe
                .versions
                .iter()
                .filter_map(|version| parse_version(version))
                .collect(),
            statements,
            level: probe.level,
            needs: probe.needs.iter().copied().collect(),
            phase: probe.phase,
            kills: probe.kills.iter().map(|kill| (*kill).to_owned()).collect(),
            body: Body::Probe(probe.run),
        }
    }
}

impl From<Scenario> for Case {
    fn from(scenario: Scenario) -> Case {
        let (section, name) = scenario
            .id
            .split_once('/')
            .map(|(section, name)| (section.to_owned(), name.to_owned()))
            .unwrap_or_else(|| ("0".to_owned(), scenario.id.clone()));
        Case {
            name,
            section,
            about: scenario.about.clone(),
            versions: scenario.versions.clone(),
            statements: scenario.statements.clone(),
            level: scenario.level,
            needs: scenario.needs.clone(),
            phase: scenario.phase,
            kills: scenario.kills.clone(),
            body: Body::Scenario(Box::new(scenario)),
        }
    }
}

/// The catalog with the YAML cases read from `dir` instead of the built-in ones (for writing
/// cases without rebuilding), then the probe cases.
pub fn catalog_from(dir: &Path) -> Result<Vec<Case>, LoadErrors> {
    let scenarios = mqtt_scenarios::load::load_paths(&[dir.to_owned()])?;
    let mut cases: Vec<Case> = scenarios.into_iter().map(Case::from).collect();
    cases.extend(crate::probes::cases().map(Case::from));
    Ok(cases)
}

/// The whole catalog: the embedded YAML cases, then the probe cases, in a fixed order.
pub fn catalog() -> Result<Vec<Case>, LoadErrors> {
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for (path, text) in embedded::EMBEDDED {
        match load_str(Path::new(path), text) {
            Ok(scenario) => cases.push(Case::from(scenario)),
            Err(mut file_errors) => errors.append(&mut file_errors.0),
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    cases.extend(crate::probes::cases().map(Case::from));
    Ok(cases)
}

/// One line per case and version, for `check --list`.
pub fn describe(case: &Case, version: ProtocolVersion) -> String {
    let needs: Vec<&str> = case.needs.iter().map(|need| need.name()).collect();
    format!(
        "{:<58} {:<5} {:<6} {}{}",
        case.id(version),
        version_name(version),
        case.level.name(),
        case.statements_for(version).join(" "),
        if needs.is_empty() {
            String::new()
        } else {
            format!("  (needs {})", needs.join(", "))
        }
    )
}
