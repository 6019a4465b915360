//! Topic names and filters: validation, matching, `$share` parsing and the subscription tree.

use std::collections::BTreeSet;

use mqtt_protocol::topic::*;
use proptest::prelude::*;

/// `(filter, topic, expected)`: mostly the examples of 5.0 §4.7 and 3.1.1 §4.7.
const MATCHING_ROWS: &[(&str, &str, bool)] = &[
    // Exact levels.
    ("sport/tennis", "sport/tennis", true),
    ("sport/tennis", "sport/tennis/player1", false),
    ("sport/tennis/player1", "sport/tennis", false),
    ("sport", "sport/", false),
    // '+' at the first, middle and last level.
    ("+/tennis/player1", "sport/tennis/player1", true),
    ("sport/+/player1", "sport/tennis/player1", true),
    ("sport/tennis/+", "sport/tennis/player1", true),
    ("sport/tennis/+", "sport/tennis/player2", true),
    ("sport/tennis/+", "sport/tennis/player1/ranking", false),
    ("sport/+", "sport", false),
    ("sport/+", "sport/", true),
    ("+", "sport", true),
    ("+/+", "sport/tennis", true),
    // '+' and empty levels.
    ("+/+", "/finance", true),
    ("/+", "/finance", true),
    ("+", "/finance", false),
    ("a/+/b", "a//b", true),
    ("+/+/+", "//", true),
    ("+", "", true),
    // '#'.
    ("#", "sport", true),
    ("#", "sport/tennis/player1", true),
    ("#", "/", true),
    ("sport/#", "sport", true),
    ("sport/#", "sport/", true),
    ("sport/#", "sport/tennis", true),
    ("sport/#", "sports", false),
    ("sport/tennis/#", "sport/tennis/player1/ranking", true),
    ("sport/tennis/player1/#", "sport/tennis/player1", true),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
    ("sport/tennis/#", "sport/badminton", false),
    ("+/tennis/#", "sport/tennis/player1/ranking", true),
    ("sport/+/#", "sport", false),
    ("sport/+/#", "sport/tennis", true),
    // Invalid filters never match a valid topic name.
    ("sport/tennis#", "sport/tennis", false),
    ("sport/tennis/#/ranking", "sport/tennis/player1/ranking", false),
    ("sport+", "sport", false),
    // No normalization: case, spaces and separators are significant.
    ("ACCOUNTS", "Accounts", false),
    ("Accounts payable", "Accounts payable", true),
    ("Accounts payable", "Accounts  payable", false),
    ("/finance", "finance", false),
    ("finance", "/finance", false),
    ("a/", "a", false),
    ("a//b", "a/b", false),
    // Topics beginning with '$'.
    ("#", "$SYS/broker/load", false),
    ("+/broker/load", "$SYS/broker/load", false),
    ("+/#", "$SYS/broker/load", false),
    ("$SYS/#", "$SYS/broker/load", true),
    ("$SYS/+/load", "$SYS/broker/load", true),
    ("$SYS/broker/load", "$SYS/broker/load", true),
    ("$SYS/#", "$SYS", true),
    ("+/monitor/Clients", "$SYS/monitor/Clients", false),
    ("a/+", "a/$b", true),
    ("a/#", "a/$b", true),
    // `$share/...` is an ordinary filter string to `matches`.
    ("$share/group/sport/+", "sport/tennis", false),
    ("$share/group/sport/+", "$share/group/sport/tennis", true),
];

#[test]
fn matching_follows_the_specification_table() {
    for (row, &(filter, topic, expected)) in MATCHING_ROWS.iter().enumerate() {
        assert_eq!(
            matches(filter, topic),
            expected,
            "row {row}: matches({filter:?}, {topic:?}) should be {expected}"
        );
    }
}

#[test]
fn the_tree_agrees_with_the_matching_table() {
    let mut tree = SubscriptionTree::new();
    for (row, &(filter, _, _)) in MATCHING_ROWS.iter().enumerate() {
        tree.insert(filter, row, ());
    }
    for (row, &(filter, topic, expected)) in MATCHING_ROWS.iter().enumerate() {
        let found = tree.matches(topic).iter().any(|&(_, &key, ())| key == row);
        assert_eq!(
            found, expected,
            "row {row}: tree match of {filter:?} against {topic:?} should be {expected}"
        );
    }
}

#[test]
fn plus_matches_exactly_one_level() {
    assert!(matches("a/+/c", "a/b/c"));
    assert!(matches("a/+/c", "a//c"));
    assert!(!matches("a/+/c", "a/b/b/c"));
    assert!(!matches("a/+/c", "a/c"));
}

#[test]
fn multi_level_wildcard_matches_the_parent_and_every_descendant() {
    for topic in ["sport", "sport/", "sport/tennis", "sport/tennis/player1/ranking"] {
        assert!(matches("sport/#", topic), "sport/# should match {topic:?}");
    }
    assert!(!matches("sport/#", "spor"));
    assert!(!matches("sport/#", "/sport"));
}

#[test]
fn dollar_topics_are_not_matched_by_a_leading_wildcard() {
    for filter in ["#", "+", "+/#", "+/broker/load", "+/+/+"] {
        assert!(
            !matches(filter, "$SYS/broker/load"),
            "{filter:?} must not match a '$' topic"
        );
    }
    for filter in ["$SYS/#", "$SYS/+/load", "$SYS/broker/+", "$SYS/broker/load"] {
        assert!(matches(filter, "$SYS/broker/load"), "{filter:?} should match");
    }
}

#[test]
fn shared_filters_are_matched_through_their_inner_filter() {
    let shared = parse_shared("$share/consumer1/sport/tennis/+");
    assert_eq!(
        shared,
        Some(SharedSubscription {
            group: "consumer1",
            filter: "sport/tennis/+",
        })
    );
    let Some(shared) = shared else { return };
    assert!(matches(shared.filter, "sport/tennis/player1"));
    assert!(!matches("$share/consumer1/sport/tennis/+", "sport/tennis/player1"));

    let finance = parse_shared("$share/consumer1//finance");
    assert_eq!(finance.map(|shared| shared.filter), Some("/finance"));
    assert!(finance.is_some_and(|shared| matches(shared.filter, "/finance")));
}

#[test]
fn parse_shared_splits_without_validating() {
    let rows: &[(&str, Option<(&str, &str)>)] = &[
        ("sport/tennis", None),
        ("$share", None),
        ("$SHARE/g/a", None),
        ("$shared/g/a", None),
        ("$share/g/a/+", Some(("g", "a/+"))),
        ("$share/g/#", Some(("g", "#"))),
        ("$share/g//", Some(("g", "/"))),
        ("$share//a", Some(("", "a"))),
        ("$share/g", Some(("g", ""))),
        ("$share/g/", Some(("g", ""))),
        ("$share/", Some(("", ""))),
        ("$share/g+/a", Some(("g+", "a"))),
    ];
    for &(filter, expected) in rows {
        let expected = expected.map(|(group, filter)| SharedSubscription { group, filter });
        assert_eq!(parse_shared(filter), expected, "parse_shared({filter:?})");
    }
}

#[test]
fn topic_names_are_validated() {
    let long_valid = "a".repeat(TOPIC_LENGTH_MAX);
    let valid = [
        "a",
        "/",
        "//",
        "sport/tennis/player1",
        "/finance",
        "finance/",
        "Accounts payable",
        "$SYS/broker/load",
        "$share/g/a",
        "\u{00e9}t\u{00e9}/\u{1f600}",
        long_valid.as_str(),
    ];
    for name in valid {
        assert_eq!(validate_topic_name(name), Ok(()), "{name:.40?} should be valid");
    }

    let too_long = "a".repeat(TOPIC_LENGTH_MAX + 1);
    let invalid = [
        ("", TopicError::Empty, "MQTT-4.7.3-1"),
        ("sport/+", TopicError::WildcardInName, "MQTT-4.7.0-1"),
        ("sport/#", TopicError::WildcardInName, "MQTT-4.7.0-1"),
        ("+", TopicError::WildcardInName, "MQTT-4.7.0-1"),
        ("sport/ten+nis", TopicError::WildcardInName, "MQTT-4.7.0-1"),
        ("a\0b", TopicError::NullCharacter, "MQTT-4.7.3-2"),
        ("\0", TopicError::NullCharacter, "MQTT-4.7.3-2"),
        (too_long.as_str(), TopicError::TooLong, "MQTT-4.7.3-3"),
    ];
    for (name, error, statement) in invalid {
        assert_eq!(validate_topic_name(name), Err(error), "name {name:.40?}");
        assert_eq!(error.statement(), statement, "statement of {error:?}");
    }
}

#[test]
fn topic_filters_are_validated_with_3_1_1_semantics() {
    let long_valid = "a/".repeat(TOPIC_LENGTH_MAX / 2) + "+";
    assert_eq!(long_valid.len(), TOPIC_LENGTH_MAX);
    let valid = [
        "a",
        "/",
        "#",
        "+",
        "+/+",
        "/+",
        "sport/#",
        "sport/tennis/#",
        "+/tennis/#",
        "sport/+/player1",
        "sport/+/#",
        "$SYS/#",
        "a//b",
        // 3.1.1 has no shared subscriptions: these are ordinary filters.
        "$share/g/a/+",
        "$share//a",
        "$share/g",
        "$share/g/",
        long_valid.as_str(),
    ];
    for filter in valid {
        assert_eq!(
            validate_topic_filter(filter),
            Ok(()),
            "{filter:.40?} should be a valid filter"
        );
    }

    let too_long = "a".repeat(TOPIC_LENGTH_MAX + 1);
    let invalid = [
        ("", TopicError::Empty, "MQTT-4.7.3-1"),
        ("a\0", TopicError::NullCharacter, "MQTT-4.7.3-2"),
        ("#\0", TopicError::NullCharacter, "MQTT-4.7.3-2"),
        (too_long.as_str(), TopicError::TooLong, "MQTT-4.7.3-3"),
        (
            "sport/tennis/#/ranking",
            TopicError::MultiLevelWildcardNotLast,
            "MQTT-4.7.1-1",
        ),
        ("#/", TopicError::MultiLevelWildcardNotLast, "MQTT-4.7.1-1"),
        ("sport/tennis#", TopicError::MultiLevelWildcardNotAlone, "MQTT-4.7.1-1"),
        ("#a", TopicError::MultiLevelWildcardNotAlone, "MQTT-4.7.1-1"),
        ("##", TopicError::MultiLevelWildcardNotAlone, "MQTT-4.7.1-1"),
        ("sport+", TopicError::WildcardNotAlone, "MQTT-4.7.1-2"),
        ("sport/+tennis", TopicError::WildcardNotAlone, "MQTT-4.7.1-2"),
        ("++", TopicError::WildcardNotAlone, "MQTT-4.7.1-2"),
        ("$share/g+/a", TopicError::WildcardNotAlone, "MQTT-4.7.1-2"),
    ];
    for (filter, error, statement) in invalid {
        assert_eq!(validate_topic_filter(filter), Err(error), "filter {filter:.40?}");
        assert_eq!(error.statement(), statement, "statement of {error:?}");
    }
}

#[test]
fn topic_filters_are_validated_with_5_0_shared_subscriptions() {
    let valid = [
        "sport/#",
        "$share",
        "$sharex/a",
        "$share/g/a/+",
        "$share/g/#",
        "$share/g/+",
        "$share/consumer1//finance",
        "$share/g//",
        "$share/g/$SYS/#",
        "$share/$g/a",
    ];
    for filter in valid {
        assert_eq!(
            validate_topic_filter_v5(filter),
            Ok(()),
            "{filter:?} should be a valid 5.0 filter"
        );
    }

    let invalid = [
        ("", TopicError::Empty, "MQTT-4.7.3-1"),
        ("$share/g/a\0", TopicError::NullCharacter, "MQTT-4.7.3-2"),
        ("$share//a", TopicError::SharedEmptyShareName, "MQTT-4.8.2-1"),
        ("$share/", TopicError::SharedEmptyShareName, "MQTT-4.8.2-1"),
        ("$share/g+/a", TopicError::SharedInvalidShareName, "MQTT-4.8.2-2"),
        ("$share/#/a", TopicError::SharedInvalidShareName, "MQTT-4.8.2-2"),
        ("$share/g", TopicError::SharedMissingFilter, "MQTT-4.8.2-2"),
        ("$share/g/", TopicError::SharedMissingFilter, "MQTT-4.8.2-2"),
        ("$share/g/a/#/b", TopicError::MultiLevelWildcardNotLast, "MQTT-4.7.1-1"),
        ("$share/g/a+", TopicError::WildcardNotAlone, "MQTT-4.7.1-2"),
        ("sport+", TopicError::WildcardNotAlone, "MQTT-4.7.1-2"),
    ];
    for (filter, error, statement) in invalid {
        assert_eq!(validate_topic_filter_v5(filter), Err(error), "filter {filter:?}");
        assert_eq!(error.statement(), statement, "statement of {error:?}");
    }
}

#[test]
fn errors_name_their_3_1_1_statements_too() {
    let rows = [
        (TopicError::Empty, Some("MQTT-4.7.3-1")),
        (TopicError::WildcardInName, Some("MQTT-4.7.1-1")),
        (TopicError::NullCharacter, Some("MQTT-4.7.3-2")),
        (TopicError::TooLong, Some("MQTT-4.7.3-3")),
        (TopicError::MultiLevelWildcardNotLast, Some("MQTT-4.7.1-2")),
        (TopicError::MultiLevelWildcardNotAlone, Some("MQTT-4.7.1-2")),
        (TopicError::WildcardNotAlone, Some("MQTT-4.7.1-3")),
        (TopicError::SharedEmptyShareName, None),
        (TopicError::SharedInvalidShareName, None),
        (TopicError::SharedMissingFilter, None),
    ];
    for (error, statement) in rows {
        assert_eq!(error.statement_v3_1_1(), statement, "{error:?}");
        assert!(!error.to_string().is_empty(), "{error:?} displays nothing");
    }
    let boxed: Box<dyn std::error::Error> = Box::new(TopicError::TooLong);
    assert_eq!(boxed.to_string(), "topic is longer than 65535 bytes");
}

#[test]
fn insert_replaces_the_value_of_the_same_filter_and_key() {
    let mut tree = SubscriptionTree::new();
    assert!(tree.is_empty());
    assert_eq!(tree.insert("sport/+", "alice", 0), None);
    assert_eq!(tree.insert("sport/+", "bob", 1), None);
    assert_eq!(tree.insert("sport/#", "alice", 2), None);
    assert_eq!(tree.len(), 3);
    assert_eq!(tree.insert("sport/+", "alice", 3), Some(0));
    assert_eq!(tree.len(), 3);
    assert_eq!(tree.get("sport/+", &"alice"), Some(&3));
    assert_eq!(tree.get("sport/+", &"bob"), Some(&1));
    assert_eq!(tree.get("sport/+", &"carol"), None);
    assert_eq!(tree.get("sport", &"alice"), None);
    assert_eq!(tree.get("sport/tennis", &"alice"), None);
    if let Some(value) = tree.get_mut("sport/#", &"alice") {
        *value = 4;
    }
    assert_eq!(tree.get("sport/#", &"alice"), Some(&4));
}

#[test]
fn remove_returns_the_value_and_prunes_empty_branches() {
    let mut tree = SubscriptionTree::new();
    tree.insert("a/b/c/d", 1, "deep");
    tree.insert("a/b", 1, "middle");
    tree.insert("a/+/#", 1, "wild");
    assert_eq!(tree.nodes_count(), 6); // a, a/b, a/b/c, a/b/c/d, a/+, a/+/#
    assert_eq!(tree.remove("a/b/c/d", &2), None);
    assert_eq!(tree.remove("a/b/c", &1), None);
    assert_eq!(tree.remove("x", &1), None);
    assert_eq!(tree.len(), 3);

    assert_eq!(tree.remove("a/b/c/d", &1), Some("deep"));
    assert_eq!(tree.nodes_count(), 4, "a/b/c and a/b/c/d should be pruned");
    assert_eq!(tree.remove("a/b/c/d", &1), None);
    assert_eq!(tree.remove("a/+/#", &1), Some("wild"));
    assert_eq!(tree.nodes_count(), 2, "a/+ and a/+/# should be pruned");
    assert_eq!(tree.remove("a/b", &1), Some("middle"));
    assert_eq!(tree.nodes_count(), 0);
    assert!(tree.is_empty());
}

#[test]
fn remove_keeps_a_node_that_still_has_other_keys_or_children() {
    let mut tree = SubscriptionTree::new();
    tree.insert("a/b", 1, ());
    tree.insert("a/b", 2, ());
    tree.insert("a/b/c", 1, ());
    assert_eq!(tree.remove("a/b", &1), Some(()));
    assert_eq!(tree.nodes_count(), 3);
    assert_eq!(tree.remove("a/b", &2), Some(()));
    assert_eq!(tree.nodes_count(), 3, "a/b still leads to a/b/c");
    assert_eq!(tree.matches("a/b").len(), 0);
    assert_eq!(tree.matches("a/b/c").len(), 1);
    assert_eq!(tree.remove("a/b/c", &1), Some(()));
    assert_eq!(tree.nodes_count(), 0);
}

#[test]
fn the_tree_honours_the_dollar_rule() {
    let mut tree = SubscriptionTree::new();
    for filter in ["#", "+/broker/load", "$SYS/#", "$SYS/+/load", "$SYS/broker/#"] {
        tree.insert(filter, 0, ());
    }
    let filters: Vec<&str> = tree
        .matches("$SYS/broker/load")
        .into_iter()
        .map(|(filter, _, ())| filter)
        .collect();
    assert_eq!(filters, ["$SYS/#", "$SYS/+/load", "$SYS/broker/#"]);
}

#[test]
fn for_each_match_visits_in_the_documented_order() {
    let mut tree = SubscriptionTree::new();
    let filters = ["a/b", "a/+", "a/#", "#", "+/b", "a/b/#", "+/+", "a/+/#"];
    for filter in filters {
        tree.insert(filter, 2, ());
        tree.insert(filter, 1, ());
    }
    let mut visited = Vec::new();
    tree.for_each_match("a/b", |filter, key, ()| visited.push((filter, *key)));
    let expected = ["#", "+/+", "+/b", "a/#", "a/+/#", "a/+", "a/b/#", "a/b"];
    let expected: Vec<(&str, i32)> = expected.iter().flat_map(|&filter| [(filter, 1), (filter, 2)]).collect();
    assert_eq!(visited, expected);
}

#[test]
fn for_each_match_order_does_not_depend_on_insertion_order() {
    let filters = ["a/b", "a/+", "a/#", "#", "+/b", "a/b/#", "+/+", "a/+/#", "+/#"];
    let mut forward = SubscriptionTree::new();
    let mut backward = SubscriptionTree::new();
    for (index, filter) in filters.iter().enumerate() {
        forward.insert(filter, index % 3, index);
    }
    for (index, filter) in filters.iter().enumerate().rev() {
        backward.insert(filter, index % 3, index);
    }
    for topic in ["a/b", "a/b/c", "a", "b/b", "$a/b"] {
        assert_eq!(forward.matches(topic), backward.matches(topic), "{topic:?}");
        assert_eq!(forward.matches(topic), forward.matches(topic), "{topic:?}");
    }
}

#[test]
fn shared_subscriptions_live_in_the_tree_under_their_inner_filter() {
    let mut tree = SubscriptionTree::new();
    for (filter, client) in [
        ("$share/workers/jobs/+", "worker-1"),
        ("$share/workers/jobs/+", "worker-2"),
        ("jobs/#", "auditor"),
    ] {
        let (inner, group) = match parse_shared(filter) {
            Some(shared) => (shared.filter, Some(shared.group)),
            None => (filter, None),
        };
        tree.insert(inner, (group, client), ());
    }
    let keys: Vec<_> = tree.matches("jobs/42").into_iter().map(|(_, key, ())| *key).collect();
    assert_eq!(
        keys,
        [
            (None, "auditor"),
            (Some("workers"), "worker-1"),
            (Some("workers"), "worker-2"),
        ]
    );
}

#[test]
fn deep_filters_do_not_exhaust_the_stack() {
    // 65,535 separators: the longest valid filter, with 65,536 empty levels.
    let filter = "/".repeat(TOPIC_LENGTH_MAX);
    let mut tree = SubscriptionTree::new();
    tree.insert(&filter, 0, ());
    let hash_filter = "/".repeat(TOPIC_LENGTH_MAX - 1) + "#";
    tree.insert(&hash_filter, 1, ());
    assert_eq!(tree.matches(&filter).len(), 2);
    assert_eq!(tree.remove(&filter, &0), Some(()));
    assert_eq!(tree.matches(&filter).len(), 1);
    drop(tree);
}

/// Builds a filter from levels of a small alphabet, with an optional final `#`.
fn valid_filter() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "$s", "", "+"]);
    (prop::collection::vec(level, 0..5), any::<bool>()).prop_filter_map(
        "a filter has at least one character",
        |(mut levels, hash)| {
            if hash {
                levels.push("#");
            }
            let filter = levels.join("/");
            (!filter.is_empty()).then_some(filter)
        },
    )
}

/// Any arrangement of levels, wildcards included, valid or not.
fn any_filter() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "$s", "", "+", "#", "a+", "#b"]);
    prop::collection::vec(level, 1..6).prop_map(|levels| levels.join("/"))
}

fn topic_name() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "$s", ""]);
    prop::collection::vec(level, 1..6).prop_map(|levels| levels.join("/"))
}

#[derive(Debug, Clone)]
enum Operation {
    Insert(String, u8, u32),
    Remove(String, u8),
}

fn operations(filter: BoxedStrategy<String>) -> impl Strategy<Value = Vec<Operation>> {
    let operation = prop_oneof![
        3 => (filter.clone(), 0..3u8, any::<u32>())
            .prop_map(|(filter, key, value)| Operation::Insert(filter, key, value)),
        1 => (filter, 0..3u8).prop_map(|(filter, key)| Operation::Remove(filter, key)),
    ];
    prop::collection::vec(operation, 0..40)
}

/// Applies `operations` to a tree and to a plain ordered map, then checks the tree against the
/// map: length, lookups, and the matches of every topic against brute force with `matches()`.
fn check_tree_against_brute_force(operations: &[Operation], topics: &[String]) -> Result<(), TestCaseError> {
    let mut tree = SubscriptionTree::new();
    let mut model = std::collections::BTreeMap::new();
    for operation in operations {
        match operation {
            Operation::Insert(filter, key, value) => {
                let expected = model.insert((filter.clone(), *key), *value);
                prop_assert_eq!(tree.insert(filter, *key, *value), expected);
            }
            Operation::Remove(filter, key) => {
                let expected = model.remove(&(filter.clone(), *key));
                prop_assert_eq!(tree.remove(filter, key), expected);
            }
        }
        prop_assert_eq!(tree.len(), model.len());
    }
    for ((filter, key), value) in &model {
        prop_assert_eq!(tree.get(filter, key), Some(value));
    }
    if model.is_empty() {
        prop_assert_eq!(tree.nodes_count(), 0);
    }
    for topic in topics {
        let mut from_tree = Vec::new();
        tree.for_each_match(topic, |filter, key, value| {
            from_tree.push((filter.to_string(), *key, *value));
        });
        let unique: BTreeSet<_> = from_tree.iter().cloned().collect();
        prop_assert_eq!(unique.len(), from_tree.len(), "an entry was visited twice");
        let brute_force: BTreeSet<_> = model
            .iter()
            .filter(|((filter, _), _)| matches(filter, topic))
            .map(|((filter, key), value)| (filter.clone(), *key, *value))
            .collect();
        prop_assert_eq!(unique, brute_force, "topic {:?}", topic);
    }
    Ok(())
}

proptest! {
    // No failure persistence: a failing case is printed, and no regression file is written next
    // to the sources.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    })]

    #[test]
    fn the_tree_finds_exactly_what_brute_force_matching_finds(
        operations in operations(valid_filter().boxed()),
        topics in prop::collection::vec(topic_name(), 1..8),
    ) {
        for operation in &operations {
            if let Operation::Insert(filter, _, _) = operation {
                prop_assert_eq!(validate_topic_filter(filter), Ok(()), "{:?}", filter);
            }
        }
        check_tree_against_brute_force(&operations, &topics)?;
    }

    #[test]
    fn the_tree_agrees_with_matches_even_on_invalid_filters(
        operations in operations(any_filter().boxed()),
        topics in prop::collection::vec(any_filter(), 1..8),
    ) {
        check_tree_against_brute_force(&operations, &topics)?;
    }

    #[test]
    fn matches_never_panics_on_arbitrary_strings(filter in ".*", topic in ".*") {
        let _ = matches(&filter, &topic);
        let _ = validate_topic_name(&topic);
        let _ = validate_topic_filter(&filter);
        let _ = validate_topic_filter_v5(&filter);
        let _ = parse_shared(&filter);
    }

    #[test]
    fn matches_never_panics_on_topic_like_strings(
        filter in "[a$/+#]{0,12}",
        topic in "[a$/+#]{0,12}",
    ) {
        let matched = matches(&filter, &topic);
        let mut tree = SubscriptionTree::new();
        tree.insert(&filter, (), ());
        prop_assert_eq!(tree.matches(&topic).len(), usize::from(matched));
    }

    #[test]
    fn a_valid_filter_matches_the_topic_it_spells(levels in prop::collection::vec("[a-c$ ]{0,3}", 1..6)) {
        let topic = levels.join("/");
        prop_assume!(validate_topic_name(&topic).is_ok());
        prop_assert!(matches(&topic, &topic));
        if !topic.starts_with('$') {
            prop_assert!(matches("#", &topic));
        }
    }
}
