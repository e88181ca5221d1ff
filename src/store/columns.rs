//! Column types the `Any` driver cannot decode into domain fields by itself, for
//! `#[derive(sqlx::FromRow)]` with `#[sqlx(try_from = "...")]`: flags are BIGINT 0/1 and
//! JSON is TEXT on both backends.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Decode, Type};

/// A BIGINT 0/1 flag (a SQLite `boolean` would not decode through `Any`).
#[derive(Debug, Clone, Copy)]
pub struct Flag(pub bool);

impl Type<Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Flag(<i64 as Decode<Any>>::decode(value)? != 0))
    }
}

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

/// A JSON TEXT column written only by this service: NULL or unreadable JSON reads as absent
/// rather than failing the whole row.
#[derive(Debug, Clone)]
pub struct JsonText<T>(pub Option<T>);

impl<T> Type<Any> for JsonText<T> {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r, T: DeserializeOwned> Decode<'r, Any> for JsonText<T> {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <Option<String> as Decode<Any>>::decode(value)?;
        Ok(JsonText(text.and_then(|t| serde_json::from_str(&t).ok())))
    }
}

impl<T> From<JsonText<T>> for Option<T> {
    fn from(json: JsonText<T>) -> Option<T> {
        json.0
    }
}

impl<K: Ord, V> From<JsonText<BTreeMap<K, V>>> for BTreeMap<K, V> {
    fn from(json: JsonText<BTreeMap<K, V>>) -> BTreeMap<K, V> {
        json.0.unwrap_or_default()
    }
}
