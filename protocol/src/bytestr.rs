//! [`ByteStr`]: an immutable UTF-8 string held in [`Bytes`], so that a string decoded from a packet
//! shares the packet's buffer instead of being copied, and cloning it (a broker fanning one PUBLISH
//! out to many subscribers) bumps a reference count instead of allocating.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// An immutable UTF-8 string backed by [`Bytes`]. It dereferences to `str` and compares equal to
/// `str` and `String`, so it reads like a `String` everywhere but on assignment (use `.into()`).
///
/// ```
/// use mqtt_protocol::ByteStr;
///
/// let topic = ByteStr::from("sensors/1/temperature");
/// assert_eq!(topic, "sensors/1/temperature");
/// assert!(topic.starts_with("sensors/"));
/// let shared = topic.clone(); // no copy of the text
/// assert_eq!(shared.as_bytes().as_ptr(), topic.as_bytes().as_ptr());
/// assert!(ByteStr::from_utf8(bytes::Bytes::from_static(b"\xFF")).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// The empty string, without allocating.
    pub const fn new() -> ByteStr {
        ByteStr(Bytes::new())
    }

    /// A string from static text, without allocating.
    pub const fn from_static(text: &'static str) -> ByteStr {
        ByteStr(Bytes::from_static(text.as_bytes()))
    }

    /// Takes `bytes` if they are well-formed UTF-8 (the bytes are checked once, here).
    ///
    /// # Errors
    ///
    /// The bytes, unchanged, with the UTF-8 error, when they are not UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<ByteStr, (Bytes, std::str::Utf8Error)> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(ByteStr(bytes)),
            Err(error) => Err((bytes, error)),
        }
    }

    /// Takes bytes the caller has already checked to be UTF-8.
    pub(crate) fn from_checked_utf8(bytes: Bytes) -> ByteStr {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        ByteStr(bytes)
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either checks the bytes with `str::from_utf8` or takes them
        // from a `str`/`String`, and the bytes are never mutated afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The UTF-8 bytes, shared.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for ByteStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for ByteStr {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<str> for ByteStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Hashes as `str` does, as `Borrow<str>` requires.
impl Hash for ByteStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for ByteStr {
    fn partial_cmp(&self, other: &ByteStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByteStr {
    fn cmp(&self, other: &ByteStr) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl From<String> for ByteStr {
    fn from(text: String) -> ByteStr {
        ByteStr(Bytes::from(text.into_bytes()))
    }
}

impl From<&str> for ByteStr {
    fn from(text: &str) -> ByteStr {
        ByteStr(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<&String> for ByteStr {
    fn from(text: &String) -> ByteStr {
        ByteStr::from(text.as_str())
    }
}

impl From<ByteStr> for String {
    fn from(text: ByteStr) -> String {
        text.as_str().to_owned()
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for ByteStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<ByteStr> for str {
    fn eq(&self, other: &ByteStr) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<ByteStr> for &str {
    fn eq(&self, other: &ByteStr) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<ByteStr> for String {
    fn eq(&self, other: &ByteStr) -> bool {
        self == other.as_str()
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for ByteStr {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<ByteStr> {
        Ok(ByteStr::from(<String as arbitrary::Arbitrary>::arbitrary(u)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn hashes_and_orders_as_str() {
        let a = ByteStr::from("a/b");
        assert_eq!(hash_of(&a), hash_of("a/b"));
        let mut set = std::collections::HashSet::new();
        set.insert(a.clone());
        assert!(set.contains("a/b"));
        let [ab, ac, e_acute, z] = ["a/b", "a/c", "é", "z"].map(ByteStr::from_static);
        assert!(ab < ac);
        assert!(e_acute > z, "ordered as str, by UTF-8 bytes");
    }

    #[test]
    fn from_utf8_checks_the_bytes() {
        assert_eq!(ByteStr::from_utf8(Bytes::from_static("ü".as_bytes())).unwrap(), "ü");
        let (bytes, _) = ByteStr::from_utf8(Bytes::from_static(b"a\xC0\x80")).unwrap_err();
        assert_eq!(&bytes[..], b"a\xC0\x80");
        assert_eq!(ByteStr::new(), "");
        assert_eq!(ByteStr::from_static("x"), String::from("x"));
    }
}
