//! Topic names and topic filters: validation, matching, shared-subscription parsing, and a
//! subscription tree for brokers.
//!
//! # What is here
//!
//! - [`validate_topic_name`] checks the name a PUBLISH carries; [`validate_topic_filter`] checks a
//!   filter with 3.1.1 semantics and [`validate_topic_filter_v5`] adds the 5.0 shared-subscription
//!   rules for filters that begin with `$share/`. A broken rule is reported as a [`TopicError`]
//!   that knows its statement id ([`TopicError::statement`]).
//! - [`matches()`] decides whether one filter matches one topic name.
//! - [`parse_shared`] splits `$share/{ShareName}/{filter}` into its group and inner filter.
//! - [`SubscriptionTree`] stores many `(filter, key) -> value` entries in a trie over topic levels
//!   and finds every entry whose filter matches a topic without scanning them all.
//!
//! Everything is pure, allocation-light and deterministic: no hashing, no clock, and every
//! iteration order is fixed by the contents (ordered maps only).
//!
//! # Matching
//!
//! Topic names and filters are split on `/` into levels; adjacent, leading or trailing separators
//! make empty levels, which are real levels (`"a//b"` has three, `"/a"` and `"a/"` have two each).
//! Nothing is normalized (5.0 and 3.1.1 MQTT-4.7.3-4): comparison is byte for byte, so case and
//! spaces are significant.
//!
//! - A filter level that is exactly `+` matches exactly one topic level, empty levels included
//!   (5.0 §4.7.1.3): `"+/+"` and `"/+"` match `"/finance"`, `"+"` does not.
//! - A filter level that is exactly `#`, as the last level, matches the parent level and any number
//!   of child levels (5.0 §4.7.1.2): `"sport/#"` matches `"sport"`, `"sport/"` and
//!   `"sport/tennis/player1"`.
//! - Any other filter level matches only the identical topic level.
//!
//! # The `$` rule
//!
//! A topic name that begins with `$` (such as `$SYS/broker/load`) is never matched by a filter whose
//! first level is a wildcard (5.0 and 3.1.1 MQTT-4.7.2-1): `"#"` and `"+/broker/load"` do not match
//! it, while `"$SYS/#"` and `"$SYS/+/load"` do. Only the first level is special: once the first
//! level has matched literally, wildcards work as usual.
//!
//! # Shared subscriptions
//!
//! In 5.0 a filter `$share/{ShareName}/{filter}` subscribes a group of sessions to `{filter}`
//! (5.0 §4.8.2). [`matches()`] and [`SubscriptionTree`] know nothing about this: to them `$share/...`
//! is an ordinary filter string. A broker parses it with [`parse_shared`] and matches the inner
//! filter, typically by storing the inner filter in the tree under a key that includes the group.
//! In 3.1.1 there are no shared subscriptions and `$share/...` is an ordinary filter.

use std::collections::BTreeMap;
use std::fmt;

/// The largest topic name or topic filter, in bytes of UTF-8 (5.0 and 3.1.1 MQTT-4.7.3-3).
pub const TOPIC_LENGTH_MAX: usize = 65_535;

/// The prefix that marks a 5.0 shared-subscription filter (5.0 MQTT-4.8.2-1).
pub const SHARED_PREFIX: &str = "$share/";

/// The topic level separator (5.0 §4.7.1.1).
const LEVEL_SEPARATOR: char = '/';
/// The single-level wildcard, as a whole filter level (5.0 §4.7.1.3).
const SINGLE_LEVEL_WILDCARD: &str = "+";
/// The multi-level wildcard, as a whole filter level (5.0 §4.7.1.2).
const MULTI_LEVEL_WILDCARD: &str = "#";

/// A rule of topic names or topic filters that an input breaks.
///
/// [`statement`](Self::statement) gives the 5.0 statement id of the rule and
/// [`statement_v3_1_1`](Self::statement_v3_1_1) the 3.1.1 one (the wildcard rules are numbered
/// differently in the two versions; shared subscriptions exist only in 5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TopicError {
    /// The name or filter has no characters (5.0 and 3.1.1 MQTT-4.7.3-1).
    Empty,
    /// A topic name contains `+` or `#` (5.0 MQTT-4.7.0-1 and MQTT-3.3.2-2; 3.1.1 MQTT-4.7.1-1
    /// and MQTT-3.3.2-2).
    WildcardInName,
    /// The name or filter contains U+0000 (5.0 and 3.1.1 MQTT-4.7.3-2).
    NullCharacter,
    /// The name or filter is longer than [`TOPIC_LENGTH_MAX`] bytes (5.0 and 3.1.1 MQTT-4.7.3-3).
    TooLong,
    /// A `#` level is followed by more levels, as in `"sport/#/ranking"` (5.0 MQTT-4.7.1-1;
    /// 3.1.1 MQTT-4.7.1-2).
    MultiLevelWildcardNotLast,
    /// A `#` shares its level with other characters, as in `"sport/tennis#"` (5.0 MQTT-4.7.1-1;
    /// 3.1.1 MQTT-4.7.1-2).
    MultiLevelWildcardNotAlone,
    /// A `+` shares its level with other characters, as in `"sport+"` (5.0 MQTT-4.7.1-2;
    /// 3.1.1 MQTT-4.7.1-3).
    WildcardNotAlone,
    /// A `$share/` filter has an empty `ShareName`, as in `"$share//a"` (5.0 MQTT-4.8.2-1).
    SharedEmptyShareName,
    /// A `ShareName` contains `+` or `#`, as in `"$share/g+/a"` (5.0 MQTT-4.8.2-2). A `/` cannot be
    /// inside a `ShareName`: the first `/` after `$share/` ends it.
    SharedInvalidShareName,
    /// The `ShareName` is not followed by `/` and a non-empty filter, as in `"$share/g"` or
    /// `"$share/g/"` (5.0 MQTT-4.8.2-2).
    SharedMissingFilter,
}

impl TopicError {
    /// The 5.0 statement id of the broken rule, such as `"MQTT-4.7.1-1"`.
    #[must_use]
    pub fn statement(&self) -> &'static str {
        match self {
            Self::Empty => "MQTT-4.7.3-1",
            Self::WildcardInName => "MQTT-4.7.0-1",
            Self::NullCharacter => "MQTT-4.7.3-2",
            Self::TooLong => "MQTT-4.7.3-3",
            Self::MultiLevelWildcardNotLast | Self::MultiLevelWildcardNotAlone => "MQTT-4.7.1-1",
            Self::WildcardNotAlone => "MQTT-4.7.1-2",
            Self::SharedEmptyShareName => "MQTT-4.8.2-1",
            Self::SharedInvalidShareName | Self::SharedMissingFilter => "MQTT-4.8.2-2",
        }
    }

    /// The 3.1.1 statement id of the broken rule, or `None` for the shared-subscription rules,
    /// which 3.1.1 does not have.
    #[must_use]
    pub fn statement_v3_1_1(&self) -> Option<&'static str> {
        match self {
            Self::Empty => Some("MQTT-4.7.3-1"),
            Self::WildcardInName => Some("MQTT-4.7.1-1"),
            Self::NullCharacter => Some("MQTT-4.7.3-2"),
            Self::TooLong => Some("MQTT-4.7.3-3"),
            Self::MultiLevelWildcardNotLast | Self::MultiLevelWildcardNotAlone => Some("MQTT-4.7.1-2"),
            Self::WildcardNotAlone => Some("MQTT-4.7.1-3"),
            Self::SharedEmptyShareName | Self::SharedInvalidShareName | Self::SharedMissingFilter => None,
        }
    }
}

impl fmt::Display for TopicError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let description = match self {
            Self::Empty => "topic is empty",
            Self::WildcardInName => "topic name contains a wildcard ('+' or '#')",
            Self::NullCharacter => "topic contains the null character U+0000",
            Self::TooLong => "topic is longer than 65535 bytes",
            Self::MultiLevelWildcardNotLast => "'#' is not the last level of the topic filter",
            Self::MultiLevelWildcardNotAlone => "'#' does not occupy a whole topic filter level",
            Self::WildcardNotAlone => "'+' does not occupy a whole topic filter level",
            Self::SharedEmptyShareName => "shared subscription has an empty ShareName",
            Self::SharedInvalidShareName => "shared subscription ShareName contains '+' or '#'",
            Self::SharedMissingFilter => "shared subscription ShareName is not followed by '/' and a topic filter",
        };
        formatter.write_str(description)
    }
}

impl std::error::Error for TopicError {}

/// Checks a topic name, as carried by PUBLISH or a Will.
///
/// The rules, checked in this order: at least one character (MQTT-4.7.3-1), at most
/// [`TOPIC_LENGTH_MAX`] bytes (MQTT-4.7.3-3), no U+0000 (MQTT-4.7.3-2), no `+` or `#`
/// (5.0 MQTT-4.7.0-1 and MQTT-3.3.2-2). The rules are the same in 3.1.1 and 5.0.
///
/// In 5.0 a PUBLISH may carry an empty topic name together with a Topic Alias (5.0 §3.3.2.3.4);
/// deciding that is the caller's business, this function checks a real name.
///
/// # Errors
///
/// The first broken rule, in the order above.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    check_length(name)?;
    // Fast path, on every PUBLISH both ways: one pass eight bytes at a time; only a name that
    // holds a suspect byte is walked again to report the first broken rule.
    let scan = crate::wire::Scan::of(name.as_bytes());
    if !scan.null && !scan.wildcard {
        return Ok(());
    }
    for byte in name.bytes() {
        match byte {
            b'\0' => return Err(TopicError::NullCharacter),
            b'+' | b'#' => return Err(TopicError::WildcardInName),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a topic filter with 3.1.1 semantics, where `$share/...` is an ordinary filter.
///
/// The rules, checked in this order: at least one character (MQTT-4.7.3-1), at most
/// [`TOPIC_LENGTH_MAX`] bytes (MQTT-4.7.3-3), no U+0000 (MQTT-4.7.3-2), then the levels from left
/// to right: `#` alone in its level and in the last level (5.0 MQTT-4.7.1-1, 3.1.1 MQTT-4.7.1-2),
/// `+` alone in its level (5.0 MQTT-4.7.1-2, 3.1.1 MQTT-4.7.1-3).
///
/// Use [`validate_topic_filter_v5`] for a 5.0 SUBSCRIBE or UNSUBSCRIBE, which also checks
/// shared-subscription filters.
///
/// # Errors
///
/// The first broken rule, in the order above.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_length(filter)?;
    check_no_null(filter)?;
    check_filter_levels(filter)
}

/// Checks a topic filter with 5.0 semantics: like [`validate_topic_filter`], and a filter that
/// begins with `$share/` must be a valid shared-subscription filter (5.0 §4.8.2).
///
/// After the checks on the whole string (empty, length, U+0000), a `$share/` filter is checked in
/// this order: a non-empty `ShareName` (5.0 MQTT-4.8.2-1), a `ShareName` without `+` or `#`, followed by
/// `/` and a non-empty inner filter (5.0 MQTT-4.8.2-2), then the inner filter's levels as in
/// [`validate_topic_filter`]. The `ShareName` runs up to the first `/` after `$share/`, so it never
/// contains `/`. A filter that is exactly `$share` (no `/`) is an ordinary filter.
///
/// Whether a shared subscription is allowed at all (the server may not support them, and 5.0
/// forbids No Local on them) is the caller's business.
///
/// # Errors
///
/// The first broken rule, in the order above.
pub fn validate_topic_filter_v5(filter: &str) -> Result<(), TopicError> {
    check_length(filter)?;
    check_no_null(filter)?;
    let Some(SharedSubscription { group, filter: inner }) = parse_shared(filter) else {
        return check_filter_levels(filter);
    };
    if group.is_empty() {
        return Err(TopicError::SharedEmptyShareName);
    }
    if group.contains(['+', '#']) {
        return Err(TopicError::SharedInvalidShareName);
    }
    if inner.is_empty() {
        return Err(TopicError::SharedMissingFilter);
    }
    check_filter_levels(inner)
}

/// Rejects empty and over-long strings (MQTT-4.7.3-1, MQTT-4.7.3-3).
fn check_length(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        Err(TopicError::Empty)
    } else if topic.len() > TOPIC_LENGTH_MAX {
        Err(TopicError::TooLong)
    } else {
        Ok(())
    }
}

/// Rejects U+0000 (MQTT-4.7.3-2).
fn check_no_null(topic: &str) -> Result<(), TopicError> {
    if topic.as_bytes().contains(&0) {
        Err(TopicError::NullCharacter)
    } else {
        Ok(())
    }
}

/// Checks where the wildcards stand in a filter, level by level from the left.
fn check_filter_levels(filter: &str) -> Result<(), TopicError> {
    // Bytes, as in `matches`: the patterns are the wildcards as whole levels.
    let mut levels = filter.as_bytes().split(|&byte| byte == b'/').peekable();
    while let Some(level) = levels.next() {
        match level {
            b"#" if levels.peek().is_some() => return Err(TopicError::MultiLevelWildcardNotLast),
            b"#" | b"+" => {}
            _ if level.contains(&b'#') => return Err(TopicError::MultiLevelWildcardNotAlone),
            _ if level.contains(&b'+') => return Err(TopicError::WildcardNotAlone),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `filter` matches the topic name `topic`, following the rules in the
/// [module documentation](self): `+` matches one level, a final `#` matches the parent level and
/// any descendants, other levels compare byte for byte, and a topic beginning with `$` is not
/// matched by a filter whose first level is a wildcard (MQTT-4.7.2-1).
///
/// Neither argument is validated; check them first with [`validate_topic_filter`] and
/// [`validate_topic_name`]. On invalid input the function never panics and the result follows the
/// level rules literally: a `#` level that is not the last level matches nothing, and a level such
/// as `"a+"` or `"a#"` is compared as plain text. `$share/...` is an ordinary filter here; see
/// [`parse_shared`].
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    // Bytes rather than chars: '/' never occurs inside a multi-byte UTF-8 sequence, and splitting
    // a byte slice is cheaper than searching a string. The patterns below are
    // `SINGLE_LEVEL_WILDCARD` and `MULTI_LEVEL_WILDCARD` as bytes.
    let mut filter_levels = filter.as_bytes().split(|&byte| byte == b'/');
    let mut topic_levels = topic.as_bytes().split(|&byte| byte == b'/');
    if topic.starts_with('$') && matches!(filter_levels.clone().next(), Some(b"+" | b"#")) {
        return false;
    }
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (None, None) => return true,
            (Some(b"#"), _) => return filter_levels.next().is_none(),
            (Some(b"+"), Some(_)) => {}
            (Some(filter_level), Some(topic_level)) if filter_level == topic_level => {}
            _ => return false,
        }
    }
}

/// A 5.0 shared-subscription filter, `$share/{ShareName}/{filter}`, split into its parts
/// (5.0 §4.8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedSubscription<'a> {
    /// The `ShareName`: the group of sessions that share the subscription.
    pub group: &'a str,
    /// The inner topic filter, the part that is matched against topic names.
    pub filter: &'a str,
}

/// Splits a `$share/{ShareName}/{filter}` filter into its group and inner filter, or returns `None`
/// when `filter` does not begin with `$share/` (an ordinary filter, or any filter in 3.1.1).
///
/// This does not validate: every filter beginning with `$share/` gives `Some`, split at the first
/// `/` after the prefix; when there is no such `/`, the whole rest is the group and the inner
/// filter is empty. So `"$share//a"` gives group `""` and filter `"a"`, `"$share/g"` gives group
/// `"g"` and filter `""`, and `"$share/g+/a"` gives group `"g+"`. Call
/// [`validate_topic_filter_v5`] first to reject those.
#[must_use]
pub fn parse_shared(filter: &str) -> Option<SharedSubscription<'_>> {
    let rest = filter.strip_prefix(SHARED_PREFIX)?;
    let (group, inner) = rest.split_once(LEVEL_SEPARATOR).unwrap_or((rest, ""));
    Some(SharedSubscription { group, filter: inner })
}

/// A trie over topic levels that maps `(filter, key)` pairs to values and finds every entry whose
/// filter matches a topic name.
///
/// The tree is generic: a broker might use the client identifier as the key and the subscription
/// options as the value, and keep a shared subscription by storing its inner filter (see
/// [`parse_shared`]) under a key that includes the group. It knows nothing about `QoS` or clients.
///
/// Filters are not validated (see [`validate_topic_filter`]); any string is accepted and matched
/// exactly as [`matches()`] would match it, the `$` rule included. A filter is stored once per node
/// together with its entries, so matching neither allocates per node nor rebuilds filter strings.
/// Every operation is iterative, so a filter with tens of thousands of levels cannot exhaust the
/// stack.
///
/// # Order
///
/// [`for_each_match`](Self::for_each_match) visits entries in an order fixed by the contents of
/// the tree, whatever the order of insertion: a depth-first walk in which, at each node, the entries
/// of a `#` filter ending there come first, then everything reached through a `+` level, then
/// everything reached through the literal level; when the topic ends at a node, that node's `#`
/// child's entries come before the node's own entries. The entries of one filter come in ascending
/// key order.
///
/// # Example
///
/// ```
/// use mqtt_protocol::topic::SubscriptionTree;
///
/// let mut tree = SubscriptionTree::new();
/// tree.insert("sport/tennis/+", "alice", 1);
/// tree.insert("sport/#", "bob", 0);
/// tree.insert("#", "carol", 2);
///
/// let mut found = Vec::new();
/// tree.for_each_match("sport/tennis/player1", |filter, client, _| found.push((filter, *client)));
/// assert_eq!(
///     found,
///     [("#", "carol"), ("sport/#", "bob"), ("sport/tennis/+", "alice")]
/// );
/// // '#' does not match a topic that begins with '$'.
/// assert!(tree.matches("$SYS/uptime").is_empty());
/// assert_eq!(tree.remove("sport/#", &"bob"), Some(0));
/// assert_eq!(tree.len(), 2);
/// ```
pub struct SubscriptionTree<K, V> {
    root: Node<K, V>,
    len: usize,
}

/// One topic level of a [`SubscriptionTree`].
struct Node<K, V> {
    /// Children reached through a literal level, such as `"sport"` or `""`.
    children: BTreeMap<Box<str>, Node<K, V>>,
    /// The child reached through a `+` level.
    single_level_child: Option<Box<Node<K, V>>>,
    /// The child reached through a `#` level. Only its entries can match; it has children only
    /// when an invalid filter such as `"a/#/b"` was inserted.
    multi_level_child: Option<Box<Node<K, V>>>,
    /// The entries of the filter that ends at this node, if any.
    entries: Option<Entries<K, V>>,
}

/// The entries of one filter.
struct Entries<K, V> {
    /// The whole filter, kept so that matching never rebuilds it from levels.
    filter: Box<str>,
    /// Never empty: a node whose last entry is removed drops its `Entries`.
    values: BTreeMap<K, V>,
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Self {
            children: BTreeMap::new(),
            single_level_child: None,
            multi_level_child: None,
            entries: None,
        }
    }

    fn child(&self, level: &str) -> Option<&Self> {
        match level {
            SINGLE_LEVEL_WILDCARD => self.single_level_child.as_deref(),
            MULTI_LEVEL_WILDCARD => self.multi_level_child.as_deref(),
            _ => self.children.get(level),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Self> {
        match level {
            SINGLE_LEVEL_WILDCARD => self.single_level_child.as_deref_mut(),
            MULTI_LEVEL_WILDCARD => self.multi_level_child.as_deref_mut(),
            _ => self.children.get_mut(level),
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Self {
        match level {
            SINGLE_LEVEL_WILDCARD => self.single_level_child.get_or_insert_with(|| Box::new(Self::new())),
            MULTI_LEVEL_WILDCARD => self.multi_level_child.get_or_insert_with(|| Box::new(Self::new())),
            _ => self.children.entry(level.into()).or_insert_with(Self::new),
        }
    }

    /// Detaches the child for `level`; dropping it drops the whole branch.
    fn remove_child(&mut self, level: &str) {
        let removed = match level {
            SINGLE_LEVEL_WILDCARD => self.single_level_child.take().map(|child| *child),
            MULTI_LEVEL_WILDCARD => self.multi_level_child.take().map(|child| *child),
            _ => self.children.remove(level),
        };
        drop(removed);
    }

    fn children_count(&self) -> usize {
        self.children.len()
            + usize::from(self.single_level_child.is_some())
            + usize::from(self.multi_level_child.is_some())
    }

    fn descendant(&self, filter: &str) -> Option<&Self> {
        let mut node = self;
        for level in filter.split(LEVEL_SEPARATOR) {
            node = node.child(level)?;
        }
        Some(node)
    }

    fn descendant_mut(&mut self, filter: &str) -> Option<&mut Self> {
        let mut node = self;
        for level in filter.split(LEVEL_SEPARATOR) {
            node = node.child_mut(level)?;
        }
        Some(node)
    }

    /// Moves every child of this node onto `nodes`, leaving it a leaf.
    fn take_children(&mut self, nodes: &mut Vec<Self>) {
        nodes.extend(std::mem::take(&mut self.children).into_values());
        nodes.extend(self.single_level_child.take().map(|child| *child));
        nodes.extend(self.multi_level_child.take().map(|child| *child));
    }

    fn visit_entries<'a>(&'a self, visit: &mut impl FnMut(&'a str, &'a K, &'a V)) {
        if let Some(entries) = &self.entries {
            for (key, value) in &entries.values {
                visit(&entries.filter, key, value);
            }
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Dismantles the branch with an explicit stack: the default recursive drop would use one
    /// stack frame per level and overflow on filters with tens of thousands of levels.
    fn drop(&mut self) {
        if self.children_count() == 0 {
            return;
        }
        let mut nodes = Vec::new();
        self.take_children(&mut nodes);
        while let Some(mut node) = nodes.pop() {
            node.take_children(&mut nodes);
        }
    }
}

/// Splits the first level off `topic`: the level, and the rest after the separator (`None` when
/// `topic` has a single level).
fn split_first_level(topic: &str) -> (&str, Option<&str>) {
    match topic.bytes().position(|byte| byte == b'/') {
        // Both slices are on character boundaries: '/' is a whole one-byte character.
        Some(separator) => (&topic[..separator], Some(&topic[separator + 1..])),
        None => (topic, None),
    }
}

impl<K: Ord, V> SubscriptionTree<K, V> {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// The number of `(filter, key)` entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of nodes below the root, one per distinct filter prefix; empty branches are
    /// pruned, so this is zero for an empty tree. Walks the whole tree.
    #[must_use]
    pub fn nodes_count(&self) -> usize {
        let mut count = 0;
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            pending.extend(node.children.values());
            pending.extend(node.single_level_child.as_deref());
            pending.extend(node.multi_level_child.as_deref());
            count += 1;
        }
        count - 1
    }

    /// Stores `value` for `(filter, key)` and returns the value it replaced, if any.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in filter.split(LEVEL_SEPARATOR) {
            node = node.child_or_insert(level);
        }
        let entries = node.entries.get_or_insert_with(|| Entries {
            filter: filter.into(),
            values: BTreeMap::new(),
        });
        let replaced = entries.values.insert(key, value);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes `(filter, key)` and returns its value, if it was present. Nodes left without
    /// entries and without children are removed.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let node = self.root.descendant_mut(filter)?;
        let entries = node.entries.as_mut()?;
        let value = entries.values.remove(key)?;
        self.len -= 1;
        if entries.values.is_empty() {
            node.entries = None;
            if node.children_count() == 0 {
                self.prune(filter);
            }
        }
        Some(value)
    }

    /// Removes the branch that leads only to the empty node of `filter`: it starts below the
    /// deepest ancestor that has entries or another child (or below the root).
    fn prune(&mut self, filter: &str) {
        let mut cut_depth = 0;
        let mut node = &self.root;
        for (depth, level) in filter.split(LEVEL_SEPARATOR).enumerate() {
            if depth > 0 && (node.entries.is_some() || node.children_count() > 1) {
                cut_depth = depth;
            }
            match node.child(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        let mut levels = filter.split(LEVEL_SEPARATOR);
        let mut keeper = &mut self.root;
        for level in levels.by_ref().take(cut_depth) {
            match keeper.child_mut(level) {
                Some(child) => keeper = child,
                None => return,
            }
        }
        if let Some(level) = levels.next() {
            keeper.remove_child(level);
        }
    }

    /// The value stored for `(filter, key)`.
    #[must_use]
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        self.root.descendant(filter)?.entries.as_ref()?.values.get(key)
    }

    /// The value stored for `(filter, key)`, mutably.
    pub fn get_mut(&mut self, filter: &str, key: &K) -> Option<&mut V> {
        self.root.descendant_mut(filter)?.entries.as_mut()?.values.get_mut(key)
    }

    /// Calls `visit(filter, key, value)` for every entry whose filter matches the topic name
    /// `topic`, in the order described on [`SubscriptionTree`], honouring the `$` rule
    /// (MQTT-4.7.2-1). The result is the same as testing every entry with [`matches()`].
    ///
    /// The references passed to `visit` live as long as the tree is borrowed, so they can be
    /// collected. Allocates nothing unless the walk branches (a node with both a `+` child and a
    /// matching literal child), and then one small stack per call.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(&'a str, &'a K, &'a V)) {
        // Branches still to walk, each a node and the topic levels left to match below it
        // (`None` when the topic ends at that node).
        let mut pending: Vec<(&'a Node<K, V>, Option<&str>)> = Vec::new();
        let mut current = Some((&self.root, Some(topic)));
        // Only the root's wildcard children are subject to the '$' rule.
        let mut root_wildcards_allowed = !topic.starts_with('$');
        while let Some((node, remaining)) = current.take().or_else(|| pending.pop()) {
            let wildcards_allowed = std::mem::replace(&mut root_wildcards_allowed, true);
            if wildcards_allowed {
                if let Some(hash) = &node.multi_level_child {
                    hash.visit_entries(&mut visit);
                }
            }
            let Some(remaining) = remaining else {
                node.visit_entries(&mut visit);
                continue;
            };
            let (level, rest) = split_first_level(remaining);
            let literal = node.children.get(level).map(|child| (child, rest));
            match node.single_level_child.as_deref() {
                Some(plus) if wildcards_allowed => {
                    // The literal branch waits; the '+' branch is walked first.
                    pending.extend(literal);
                    current = Some((plus, rest));
                }
                _ => current = literal,
            }
        }
    }

    /// Every entry whose filter matches `topic`, as `(filter, key, value)`, in the order of
    /// [`for_each_match`](Self::for_each_match).
    #[must_use]
    pub fn matches(&self, topic: &str) -> Vec<(&str, &K, &V)> {
        let mut found = Vec::new();
        self.for_each_match(topic, |filter, key, value| found.push((filter, key, value)));
        found
    }
}

impl<K: Ord, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for SubscriptionTree<K, V> {
    /// Shows only the number of entries: printing the tree level by level would recurse as deep
    /// as the deepest filter.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SubscriptionTree")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}
