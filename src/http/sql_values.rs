//! Values between JSON and PostgreSQL for `POST /v1/sql`: JSON parameters
//! bound by the types the prepared statement expects, and row values turned
//! into JSON by column type (numbers, numeric as a string, timestamps as
//! RFC 3339, bytea as base64, NULL as null). A type this module does not
//! know is refused with a message that says which cast to write.

use std::error::Error as StdError;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::{Number, Value};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use uuid::Uuid;

/// A bound parameter.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// Converts JSON parameter `n` (1-based) to the type the statement expects.
pub fn bind(n: usize, value: &Value, ty: &Type) -> Result<Param, String> {
    if value.is_null() {
        return Ok(Box::new(Null));
    }
    let wrong = || format!("parameter ${n} must be a {ty} value, got {value}");
    let text = || match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    };
    let param: Param = match *ty {
        Type::BOOL => Box::new(value.as_bool().ok_or_else(wrong)?),
        Type::INT2 => Box::new(
            int(value)
                .and_then(|i| i16::try_from(i).ok())
                .ok_or_else(wrong)?,
        ),
        Type::INT4 => Box::new(
            int(value)
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(wrong)?,
        ),
        Type::INT8 => Box::new(int(value).ok_or_else(wrong)?),
        Type::FLOAT4 => Box::new(value.as_f64().ok_or_else(wrong)? as f32),
        Type::FLOAT8 => Box::new(value.as_f64().ok_or_else(wrong)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            Box::new(text().ok_or_else(wrong)?)
        }
        Type::JSON | Type::JSONB => Box::new(value.clone()),
        Type::UUID => Box::new(parse::<Uuid>(value).ok_or_else(wrong)?),
        Type::TIMESTAMPTZ => Box::new(
            value
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(wrong)?,
        ),
        Type::TIMESTAMP => Box::new(parse::<NaiveDateTime>(value).ok_or_else(wrong)?),
        Type::DATE => Box::new(parse::<NaiveDate>(value).ok_or_else(wrong)?),
        Type::TIME => Box::new(parse::<NaiveTime>(value).ok_or_else(wrong)?),
        Type::BYTEA => Box::new(
            value
                .as_str()
                .and_then(|s| BASE64.decode(s).ok())
                .ok_or_else(|| format!("parameter ${n} must be base64 text for bytea"))?,
        ),
        _ => {
            return Err(format!(
                "parameter ${n} has type {ty}, which /v1/sql cannot bind from JSON; \
                 send it as text and cast it, e.g. ${n}::text::{ty}"
            ));
        }
    };
    Ok(param)
}

fn int(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn parse<T: std::str::FromStr>(value: &Value) -> Option<T> {
    value.as_str().and_then(|s| s.parse().ok())
}

/// SQL NULL of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Bytes of data in `row`, as the server sent its values (NULLs count 0).
pub fn row_size(row: &Row) -> usize {
    (0..row.len())
        .map(|i| {
            row.try_get::<_, Option<RawSize>>(i)
                .ok()
                .flatten()
                .map_or(0, |size| size.0)
        })
        .sum()
}

/// The size of a value in the server's encoding, whatever its type.
struct RawSize(usize);

impl<'a> FromSql<'a> for RawSize {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Self(raw.len()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The JSON value of column `i` of `row`.
pub fn column(row: &Row, i: usize) -> Result<Value, String> {
    let ty = row.columns()[i].type_();
    let get = |e: tokio_postgres::Error| e.to_string();
    let value = match *ty {
        Type::BOOL => json(row.try_get::<_, Option<bool>>(i).map_err(get)?),
        Type::INT2 => json(row.try_get::<_, Option<i16>>(i).map_err(get)?),
        Type::INT4 => json(row.try_get::<_, Option<i32>>(i).map_err(get)?),
        Type::INT8 => json(row.try_get::<_, Option<i64>>(i).map_err(get)?),
        Type::OID => json(row.try_get::<_, Option<u32>>(i).map_err(get)?),
        Type::FLOAT4 => float(
            row.try_get::<_, Option<f32>>(i)
                .map_err(get)?
                .map(f64::from),
        ),
        Type::FLOAT8 => float(row.try_get::<_, Option<f64>>(i).map_err(get)?),
        Type::NUMERIC => json(
            row.try_get::<_, Option<NumericText>>(i)
                .map_err(get)?
                .map(|n| n.0),
        ),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            json(row.try_get::<_, Option<String>>(i).map_err(get)?)
        }
        Type::JSON | Type::JSONB => row
            .try_get::<_, Option<Value>>(i)
            .map_err(get)?
            .unwrap_or(Value::Null),
        Type::UUID => json(
            row.try_get::<_, Option<Uuid>>(i)
                .map_err(get)?
                .map(|u| u.to_string()),
        ),
        Type::TIMESTAMPTZ => json(
            row.try_get::<_, Option<DateTime<Utc>>>(i)
                .map_err(get)?
                .map(|t| t.to_rfc3339()),
        ),
        Type::TIMESTAMP => json(
            row.try_get::<_, Option<NaiveDateTime>>(i)
                .map_err(get)?
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        ),
        Type::DATE => json(
            row.try_get::<_, Option<NaiveDate>>(i)
                .map_err(get)?
                .map(|d| d.to_string()),
        ),
        Type::TIME => json(
            row.try_get::<_, Option<NaiveTime>>(i)
                .map_err(get)?
                .map(|t| t.to_string()),
        ),
        Type::BYTEA => json(
            row.try_get::<_, Option<Vec<u8>>>(i)
                .map_err(get)?
                .map(|b| BASE64.encode(b)),
        ),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => json(
            row.try_get::<_, Option<Vec<Option<String>>>>(i)
                .map_err(get)?,
        ),
        Type::INT4_ARRAY => json(row.try_get::<_, Option<Vec<Option<i32>>>>(i).map_err(get)?),
        Type::INT8_ARRAY => json(row.try_get::<_, Option<Vec<Option<i64>>>>(i).map_err(get)?),
        Type::BOOL_ARRAY => json(
            row.try_get::<_, Option<Vec<Option<bool>>>>(i)
                .map_err(get)?,
        ),
        _ if matches!(ty.kind(), Kind::Enum(_)) => json(
            row.try_get::<_, Option<EnumText>>(i)
                .map_err(get)?
                .map(|e| e.0),
        ),
        _ => {
            let name = row.columns()[i].name();
            return Err(format!(
                "column {name:?} has type {ty}, which /v1/sql cannot turn into JSON; \
                 cast it in the statement, e.g. {name}::text"
            ));
        }
    };
    Ok(value)
}

fn json<T: serde::Serialize>(value: Option<T>) -> Value {
    value
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or(Value::Null)
}

fn float(value: Option<f64>) -> Value {
    match value {
        None => Value::Null,
        Some(f) => Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number),
    }
}

/// An enum label.
struct EnumText(String);

impl<'a> FromSql<'a> for EnumText {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Self(std::str::from_utf8(raw)?.to_owned()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Enum(_))
    }
}

/// A `numeric` as exact decimal text (JSON numbers would lose precision).
pub struct NumericText(pub String);

impl<'a> FromSql<'a> for NumericText {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        numeric_text(raw)
            .map(Self)
            .ok_or_else(|| "malformed numeric value".into())
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// Decodes PostgreSQL's binary numeric (base-10000 digits) to decimal text.
fn numeric_text(raw: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes([*raw.get(2 * i)?, *raw.get(2 * i + 1)?]))
    };
    let (ndigits, weight) = (usize::try_from(word(0)?).ok()?, word(1)?);
    let (sign, dscale) = (word(2)? as u16, usize::try_from(word(3)?).ok()?);
    match sign {
        0xC000 => return Some("NaN".to_owned()),
        0xD000 => return Some("Infinity".to_owned()),
        0xF000 => return Some("-Infinity".to_owned()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits).map(|k| word(4 + k)).collect::<Option<_>>()?;
    let digit = |k: i64| -> i16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit(0).to_string());
        for k in 1..=i64::from(weight) {
            out.push_str(&format!("{:04}", digit(k)));
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = i64::from(weight) + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::numeric_text;

    fn encode(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale].iter().chain(digits) {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_decode_exactly() {
        assert_eq!(
            numeric_text(&encode(2, 0, 0, 2, &[12, 3400])).unwrap(),
            "12.34"
        );
        assert_eq!(
            numeric_text(&encode(2, 1, 0x4000, 0, &[1, 2])).unwrap(),
            "-10002"
        );
        assert_eq!(numeric_text(&encode(1, -1, 0, 3, &[50])).unwrap(), "0.005");
        assert_eq!(numeric_text(&encode(0, 0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(numeric_text(&encode(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
    }
}
