//! Topic matching: one topic against a subscription tree of 10,000 filters, and one filter
//! against one topic.

use criterion::{criterion_group, criterion_main, Criterion};
use mqtt_protocol::topic::{matches, validate_topic_filter, SubscriptionTree};
use std::hint::black_box;

/// The number of filters in the tree.
const FILTERS_COUNT: usize = 10_000;

/// A topic that matches exactly five filters of [`subscription_tree`].
const TOPIC: &str = "site/42/device/1042/temperature";

/// Ten thousand filters, as a broker for 2,000 devices on 100 sites might hold them: for each
/// device one filter on a single level, one exact, one multi-level, one with a leading `+` and one
/// with a `+` in the middle. The key is the subscription's index.
fn subscription_tree() -> SubscriptionTree<usize, ()> {
    let mut tree = SubscriptionTree::new();
    for index in 0..FILTERS_COUNT {
        let device = index / 5;
        let site = device % 100;
        let filter = match index % 5 {
            0 => format!("site/{site}/device/{device}/+"),
            1 => format!("site/{site}/device/{device}/temperature"),
            2 => format!("site/{site}/device/{device}/#"),
            3 => format!("+/{site}/device/{device}/temperature"),
            _ => format!("site/{site}/+/{device}/temperature"),
        };
        debug_assert_eq!(validate_topic_filter(&filter), Ok(()));
        tree.insert(&filter, index, ());
    }
    tree
}

fn topic(criterion: &mut Criterion) {
    let tree = subscription_tree();
    assert_eq!(tree.len(), FILTERS_COUNT);
    assert_eq!(tree.matches(TOPIC).len(), 5);

    let mut group = criterion.benchmark_group("topic");
    group.bench_function("tree_match_10k", |bencher| {
        bencher.iter(|| {
            let mut found = 0_usize;
            tree.for_each_match(black_box(TOPIC), |_, _, ()| found += 1);
            found
        });
    });
    group.bench_function("matches_single", |bencher| {
        bencher.iter(|| matches(black_box("site/+/device/+/#"), black_box(TOPIC)));
    });
    group.bench_function("validate_filter", |bencher| {
        bencher.iter(|| validate_topic_filter(black_box("site/+/device/+/#")));
    });
    group.finish();
}

criterion_group!(benches, topic);
criterion_main!(benches);
