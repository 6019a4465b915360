//! What a run does: who publishes where, who subscribes to what, how fast, for how long, and which
//! slice of it this process runs (`--shard k/n`).
//!
//! # Topology
//!
//! There are `topics` topic groups, numbered from 0. Publisher `i` publishes to group `i mod
//! topics`, subscriber `j` listens to group `j mod topics`. With the default number of groups
//! (the smaller of publishers and subscribers) that covers the usual shapes: 1 publisher and 50
//! subscribers is fan-out (one group), 10 and 1 is fan-in (one group), 10 and 10 is N to N (ten
//! groups, one publisher and one subscriber each). The [`Shape`] says how a subscriber listens to
//! its group: the exact topic, a wildcard filter matching it, or as a member of the group's shared
//! subscription (each message then goes to one member of the group).
//!
//! # Shards
//!
//! Shard `k` of `n` owns the groups whose number is `k mod n`: their publishers and their
//! subscribers, so that every message is sent and received in the same process and its latency is
//! measured on one clock; a shared group never spans shards. The total rate is shared among all
//! publishers of all shards, so `n` shards together offer what one process would.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use mqtt_protocol::{ProtocolVersion, QoS};

/// The smallest payload: it carries a run tag, the publisher, the sequence number and the
/// intended send time (see [`crate::payload`]).
pub const PAYLOAD_BYTES_MIN: usize = crate::payload::STAMP_LEN;

/// The largest payload `--payload-bytes` takes: well below the 256 MiB MQTT limit, and enough to
/// saturate any broker's network path.
pub const PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// How subscribers listen to their topic group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Each subscriber subscribes to its group's topic.
    #[default]
    Topic,
    /// Each subscriber subscribes to a filter with a single-level wildcard that matches exactly
    /// its group's topic: the same stream, through the broker's wildcard matching.
    Wildcard,
    /// The subscribers of a group are the members of one shared subscription (5.0 `$share/`):
    /// each message goes to one of them.
    Shared,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Topic => "topic",
            Shape::Wildcard => "wildcard",
            Shape::Shared => "shared",
        }
    }
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(text: &str) -> Result<Shape, String> {
        match text {
            "topic" => Ok(Shape::Topic),
            "wildcard" => Ok(Shape::Wildcard),
            "shared" => Ok(Shape::Shared),
            other => Err(format!("unknown shape `{other}`: use topic, wildcard or shared")),
        }
    }
}

/// When a publisher's messages are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arrivals {
    /// Evenly spaced, each publisher offset so that the publishers do not send in lockstep.
    #[default]
    Even,
    /// A Poisson process: exponential gaps of the same mean, from a seed.
    Poisson,
}

impl FromStr for Arrivals {
    type Err = String;

    fn from_str(text: &str) -> Result<Arrivals, String> {
        match text {
            "even" => Ok(Arrivals::Even),
            "poisson" => Ok(Arrivals::Poisson),
            other => Err(format!("unknown arrivals `{other}`: use even or poisson")),
        }
    }
}

impl Arrivals {
    pub fn name(self) -> &'static str {
        match self {
            Arrivals::Even => "even",
            Arrivals::Poisson => "poisson",
        }
    }
}

/// The payload size: fixed, or uniform over a range (both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSize {
    pub min: usize,
    pub max: usize,
}

impl PayloadSize {
    pub fn fixed(bytes: usize) -> PayloadSize {
        PayloadSize { min: bytes, max: bytes }
    }

    pub fn is_fixed(&self) -> bool {
        self.min == self.max
    }
}

impl fmt::Display for PayloadSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_fixed() {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

impl FromStr for PayloadSize {
    type Err = String;

    /// `64`, or `64..1024` (uniform, both ends included).
    fn from_str(text: &str) -> Result<PayloadSize, String> {
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{text}` is not a payload size: write 64 or 64..1024"))
        };
        let size = match text.split_once("..") {
            Some((min, max)) => PayloadSize {
                min: number(min)?,
                max: number(max)?,
            },
            None => PayloadSize::fixed(number(text)?),
        };
        if size.min > size.max {
            return Err(format!("payload size {text}: the range is empty"));
        }
        if size.min < PAYLOAD_BYTES_MIN {
            return Err(format!(
                "payload size {text}: at least {PAYLOAD_BYTES_MIN} bytes, which carry the publisher, sequence number and send time"
            ));
        }
        if size.max > PAYLOAD_BYTES_MAX {
            return Err(format!("payload size {text}: at most {PAYLOAD_BYTES_MAX} bytes"));
        }
        Ok(size)
    }
}

/// `K/N`: this process runs shard K (from 0) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether topic group `group` belongs to this shard.
    pub fn owns(&self, group: usize) -> bool {
        group % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let parse = |part: &str| part.trim().parse::<usize>().ok();
        let (index, count) = text
            .split_once('/')
            .and_then(|(index, count)| Some((parse(index)?, parse(count)?)))
            .ok_or_else(|| format!("`{text}` is not a shard: write K/N, K from 0 to N-1"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {text}: K counts from 0 to N-1"));
        }
        Ok(Shard { index, count })
    }
}

/// `30s`, `2m`, `500ms`, `1h`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write 30s, 2m or 500ms"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s, m or h)")),
    };
    if !seconds.is_finite() || !(0.0..=7.0 * 24.0 * 3600.0).contains(&seconds) {
        return Err(format!("`{text}` is not a duration between 0 and a week"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A duration as the tools write it: `30s`, `1.5s`, `250ms`, `2m`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 1.0 {
        format!("{}ms", duration.as_millis())
    } else if seconds >= 120.0 && seconds.fract() == 0.0 && duration.as_secs().is_multiple_of(60) {
        format!("{}m", duration.as_secs() / 60)
    } else if seconds.fract() == 0.0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{seconds:.1}s")
    }
}

/// A message workload, whole (before sharding).
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub publishers: usize,
    pub subscribers: usize,
    /// Topic groups; see the module documentation.
    pub topics: usize,
    pub shape: Shape,
    pub qos: QoS,
    /// Messages per second offered by all publishers together (of all shards).
    pub rate: f64,
    pub payload: PayloadSize,
    pub retain: bool,
    pub version: ProtocolVersion,
    pub arrivals: Arrivals,
    /// Seeds the Poisson gaps and the payload sizes.
    pub seed: u64,
    /// Sent and delivered but not measured: connections warm up, the broker's caches fill.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    pub shard: Shard,
    /// Client ids are `{prefix}-{run}-p{i}` and `{prefix}-{run}-s{j}`.
    pub client_id_prefix: String,
    /// Topics are `{prefix}/{run}/{group}/m`.
    pub topic_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// QoS 1 and 2 messages a publisher may have unacknowledged (also bounded by the broker's
    /// Receive Maximum).
    pub inflight: u16,
    /// The wall-clock instant the schedule starts, for shards started apart; `None`: as soon as
    /// the connections are up.
    pub start_at: Option<std::time::SystemTime>,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            publishers: 1,
            subscribers: 1,
            topics: 1,
            shape: Shape::Topic,
            qos: QoS::AtMostOnce,
            rate: 1000.0,
            payload: PayloadSize::fixed(64),
            retain: false,
            version: ProtocolVersion::V5,
            arrivals: Arrivals::Even,
            seed: 1,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            shard: Shard::WHOLE,
            client_id_prefix: "mqtt-harness-bench".into(),
            topic_prefix: "mqtt-harness/bench".into(),
            username: None,
            password: None,
            inflight: 1000,
            start_at: None,
        }
    }
}

impl Workload {
    /// The topic groups when `--topics` is not given: one per publisher-subscriber pair, so that
    /// 1 to N is fan-out, N to 1 fan-in and N to N pairs.
    pub fn default_topics(publishers: usize, subscribers: usize) -> usize {
        publishers.min(subscribers).max(1)
    }

    /// Refuses what cannot run, with the reason in one line.
    pub fn validate(&self) -> Result<(), String> {
        if self.publishers == 0 {
            return Err("--publishers must be at least 1".into());
        }
        if self.topics == 0 {
            return Err("--topics must be at least 1".into());
        }
        if self.topics > self.publishers.max(self.subscribers) {
            return Err(format!(
                "--topics {} is more than there are publishers ({}) and subscribers ({}): groups would be empty",
                self.topics, self.publishers, self.subscribers
            ));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!(
                "--rate must be a positive number of messages per second, not {}",
                self.rate
            ));
        }
        if self.duration.is_zero() {
            return Err("--duration must be longer than 0".into());
        }
        if self.shape == Shape::Shared && !self.version.is_v5() {
            return Err("shared subscriptions need MQTT 5.0 (--protocol 5.0)".into());
        }
        if self.shard.count > self.topics {
            return Err(format!(
                "--shard {}: {} shards for {} topic groups would leave a shard with nothing to run (at most {} shards)",
                self.shard, self.shard.count, self.topics, self.topics
            ));
        }
        if self.qos != QoS::AtMostOnce && self.inflight == 0 {
            return Err("--inflight must be at least 1".into());
        }
        Ok(())
    }

    /// The rate of each publisher.
    pub fn rate_per_publisher(&self) -> f64 {
        self.rate / self.publishers as f64
    }

    /// The publishers of this shard: (publisher number, topic group).
    pub fn local_publishers(&self) -> Vec<(usize, usize)> {
        (0..self.publishers)
            .map(|publisher| (publisher, publisher % self.topics))
            .filter(|(_, group)| self.shard.owns(*group))
            .collect()
    }

    /// The subscribers of this shard: (subscriber number, topic group).
    pub fn local_subscribers(&self) -> Vec<(usize, usize)> {
        (0..self.subscribers)
            .map(|subscriber| (subscriber, subscriber % self.topics))
            .filter(|(_, group)| self.shard.owns(*group))
            .collect()
    }

    /// The publishers of `group`, by number.
    pub fn publishers_of(&self, group: usize) -> Vec<usize> {
        (group..self.publishers).step_by(self.topics).collect()
    }

    /// How many copies of each message published to `group` the broker owes: one per subscriber
    /// of the group, or one per shared group.
    pub fn copies_per_message(&self, group: usize) -> u64 {
        let subscribers = (group..self.subscribers).step_by(self.topics).count() as u64;
        match self.shape {
            Shape::Shared => u64::from(subscribers > 0),
            Shape::Topic | Shape::Wildcard => subscribers,
        }
    }

    /// The topic of `group` in run `run`.
    pub fn topic(&self, run: &str, group: usize) -> String {
        format!("{}/{run}/{group}/m", self.topic_prefix)
    }

    /// What subscribers of `group` subscribe to.
    pub fn filter(&self, run: &str, group: usize) -> String {
        match self.shape {
            Shape::Topic => self.topic(run, group),
            Shape::Wildcard => format!("{}/{run}/{group}/+", self.topic_prefix),
            Shape::Shared => format!("$share/g{group}/{}", self.topic(run, group)),
        }
    }

    pub fn publisher_client_id(&self, run: &str, publisher: usize) -> String {
        format!("{}-{run}-p{publisher}", self.client_id_prefix)
    }

    pub fn subscriber_client_id(&self, run: &str, subscriber: usize) -> String {
        format!("{}-{run}-s{subscriber}", self.client_id_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_topic_groups_whole_and_cover_them_once() {
        let whole = Workload {
            publishers: 7,
            subscribers: 12,
            topics: 5,
            ..Workload::default()
        };
        let mut publishers = Vec::new();
        let mut subscribers = Vec::new();
        for index in 0..3 {
            let shard = Workload {
                shard: Shard { index, count: 3 },
                ..whole.clone()
            };
            for (_, group) in shard.local_publishers().into_iter().chain(shard.local_subscribers()) {
                assert_eq!(group % 3, index, "a group belongs to one shard");
            }
            publishers.extend(shard.local_publishers());
            subscribers.extend(shard.local_subscribers());
        }
        publishers.sort();
        subscribers.sort();
        assert_eq!(publishers, whole.local_publishers());
        assert_eq!(subscribers, whole.local_subscribers());
    }

    #[test]
    fn copies_follow_the_shape() {
        let workload = Workload {
            publishers: 1,
            subscribers: 50,
            topics: 1,
            ..Workload::default()
        };
        assert_eq!(workload.copies_per_message(0), 50);
        let shared = Workload {
            shape: Shape::Shared,
            ..workload
        };
        assert_eq!(shared.copies_per_message(0), 1);
    }

    #[test]
    fn durations_sizes_and_shards_parse_as_written_and_refuse_nonsense() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!("64".parse(), Ok(PayloadSize::fixed(64)));
        assert_eq!("64..1024".parse(), Ok(PayloadSize { min: 64, max: 1024 }));
        assert!("8".parse::<PayloadSize>().is_err(), "too small for the stamp");
        assert!("100..64".parse::<PayloadSize>().is_err());
        assert_eq!("1/4".parse(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
    }

    #[test]
    fn a_workload_that_cannot_run_says_why() {
        let zero_rate = Workload {
            rate: 0.0,
            ..Workload::default()
        };
        assert!(zero_rate.validate().unwrap_err().contains("--rate"));
        let too_many_shards = Workload {
            shard: Shard { index: 0, count: 2 },
            ..Workload::default()
        };
        assert!(too_many_shards.validate().unwrap_err().contains("at most 1 shards"));
    }
}
