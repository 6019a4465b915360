//! The full cross product of the catalog and the reference broker's planted bugs: for each bug,
//! the whole catalog runs against a broker with that bug alone, and the cases that fail are the
//! ones that catch it. CI runs only the cases tagged for each bug (`kills:`); this shows what the
//! whole catalog catches, and the wall time of each pass. Figures are reported, not gates.
//!
//! `cargo bench -p mqtt-conformance --bench mutations`

use std::time::Instant;

use mqtt_broker::{Config, Mutation, Mutations};
use mqtt_conformance::catalog::catalog;
use mqtt_conformance::context::Endpoint;
use mqtt_conformance::runner::{check, CheckOptions};
use mqtt_reports::Verdict;
use mqtt_scenarios::live::ReferenceBroker;

fn main() {
    let catalog = catalog().unwrap_or_else(|errors| panic!("{errors}"));
    let options = CheckOptions::default();
    for mutation in Mutation::ALL {
        let config = Config {
            mutations: Mutations::from(*mutation),
            ..Config::default()
        };
        let broker = ReferenceBroker::start(config).expect("the reference broker starts");
        let started = Instant::now();
        let run = check(Endpoint::tcp(broker.address()), "", &catalog, &options, &|| {})
            .unwrap_or_else(|error| panic!("{error}"));
        let killers: Vec<String> = run
            .cases
            .iter()
            .filter(|case| case.verdict == Verdict::Fail)
            .map(|case| format!("{} [{}]", case.id, case.version))
            .collect();
        let tagged = catalog
            .iter()
            .filter(|case| case.kills.iter().any(|kill| kill == mutation.name()))
            .count();
        println!(
            "{}: caught by {} case runs ({tagged} cases tagged) in {:.1} s",
            mutation.name(),
            killers.len(),
            started.elapsed().as_secs_f64()
        );
        for killer in killers {
            println!("    {killer}");
        }
    }
}
