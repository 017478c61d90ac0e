//! `${name}` variables in job specs, so one spec serves every day of a daily job:
//! `zoopipectl submit daily.yaml --var date=2024-01-01` (`date` defaults to today in UTC).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::LazyLock;

static VARIABLE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("a valid pattern")
});

/// `name=value` from the command line.
pub fn parse_var(text: &str) -> std::result::Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))?;
    let name = name.trim();
    if !VARIABLE.is_match(&format!("${{{name}}}")) {
        return Err(format!(
            "'{name}' is not a variable name (letters, digits, _)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// The variables a run gets: those given, and `date` (today, UTC) unless given.
pub fn with_defaults(given: &[(String, String)]) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = given.iter().cloned().collect();
    let now = chrono::Utc::now();
    vars.entry("date".to_string())
        .or_insert_with(|| now.format("%Y-%m-%d").to_string());
    // Filled per table by `JobSpec::per_table` (`s3://lake/raw/${table}.parquet`).
    vars.entry("table".to_string())
        .or_insert_with(|| "${table}".to_string());
    // The seed's versioned paths (`v_${time}`): one value for the whole spec.
    vars.entry("time".to_string())
        .or_insert_with(|| now.format("%Y%m%dT%H%M%S").to_string());
    vars
}

/// Replace every `${name}` in `text`; `used` collects the names that occurred. A variable
/// that has no value is an error naming it (a typo must not reach S3 as a literal `${..}`).
pub fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
    used: &mut BTreeMap<String, String>,
) -> Result<String> {
    let mut missing = None;
    let replaced = VARIABLE.replace_all(text, |caps: &regex::Captures| {
        let name = &caps[1];
        match vars.get(name) {
            Some(value) => {
                used.insert(name.to_string(), value.clone());
                value.clone()
            }
            None => {
                missing.get_or_insert_with(|| name.to_string());
                String::new()
            }
        }
    });
    match missing {
        Some(name) => Err(Error::config(format!(
            "the job spec uses ${{{name}}} but no value was given: pass --var {name}=VALUE"
        ))),
        None => Ok(replaced.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_given_and_default_variables_and_names_missing_ones() {
        let vars = with_defaults(&[("region".into(), "eu".into())]);
        let mut used = BTreeMap::new();
        let out = substitute("s3://raw/${region}/${date}/*.csv", &vars, &mut used).unwrap();
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        assert_eq!(out, format!("s3://raw/eu/{today}/*.csv"));
        assert_eq!(used.len(), 2);
        let err = substitute("s3://x/${dat}/", &vars, &mut used).unwrap_err();
        assert!(err.to_string().contains("--var dat=VALUE"), "{err}");
        assert_eq!(parse_var("date=2024-01-01").unwrap().1, "2024-01-01");
        assert!(parse_var("no-equals").is_err());
        assert!(parse_var("bad name=1").is_err());
    }
}
