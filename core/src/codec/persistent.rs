//! Decoding the state's persistent collections (`imbl`) without trusting a length prefix.
//!
//! `imbl`'s own deserializers reserve room for as many items as the bytes claim, so a
//! corrupt or hostile snapshot could ask for gigabytes before a single item is read. These go
//! through the standard collections, whose deserializers cap what they reserve up front, and
//! convert. Encoding is `imbl`'s own (a map or a sequence, as the standard ones).

use imbl::{OrdMap, Vector};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// For `#[serde(deserialize_with = "...")]` on an [`OrdMap`].
pub fn ord_map<'de, D, K, V>(deserializer: D) -> Result<OrdMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    Ok(BTreeMap::<K, V>::deserialize(deserializer)?
        .into_iter()
        .collect())
}

/// For `#[serde(deserialize_with = "...")]` on a [`Vector`].
pub fn vector<'de, D, A>(deserializer: D) -> Result<Vector<A>, D::Error>
where
    D: Deserializer<'de>,
    A: Deserialize<'de> + Clone,
{
    Ok(Vec::<A>::deserialize(deserializer)?.into())
}
