//! `--config FILE`: the command line in TOML, and a `[[site]]` table per site.
//!
//! A top-level key is a flag's long name with `_` for `-` (`idle_timeout = 30`,
//! `header = ["X-A: 1"]`, `404_page = "404.html"`, `root = "/srv/www"`), read by the flag's own
//! parser, so the file and the command line can never disagree about what a value means. A flag
//! given on the command line (or its `ONEPOLL_*` variable) wins over the file. A `[[site]]`
//! table holds `names`, `default` and the per-site keys; each site's settings are the file's
//! top level with its table on top. Unknown keys, values of the wrong type and a site without
//! a root are errors naming the file, the line and the key.

use std::ffi::OsString;
use std::path::Path;

use clap::{ArgAction, Command};
use toml::Value;

use crate::site::{SiteName, UnknownHost};

/// The keys a `[[site]]` table may hold besides `names` and `default`.
pub const SITE_KEYS: [&str; 12] = [
    "root",
    "tls_cert",
    "tls_key",
    "header",
    "header_for",
    "spa_fallback",
    "listing",
    "hidden",
    "404_page",
    "auth_file",
    "auth_path",
    "auth_realm",
];

/// A configuration file, read and checked against the command's flags.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// The top-level keys but `root` as command-line arguments (without the program's name).
    pub args: Vec<OsString>,
    /// The top-level `root`, the single site's (`[[site]]` tables have their own).
    pub root: Option<OsString>,
    /// Each top-level flag key and its line.
    pub lines: Vec<(String, usize)>,
    pub sites: Vec<SiteTable>,
    pub unknown_host: UnknownHost,
}

/// One `[[site]]` table.
#[derive(Debug, Clone)]
pub struct SiteTable {
    pub names: Vec<SiteName>,
    pub default: bool,
    /// Its per-site keys as command-line arguments, to go after the top level's.
    pub args: Vec<OsString>,
    /// Where the table starts, for messages about the site as a whole.
    pub line: usize,
}

impl ConfigFile {
    /// Reads `path`. `given` says whether a flag (by its long name) was set on the command
    /// line or by its variable, in which case the file's key is left out.
    pub fn read(path: &Path, command: &Command, given: &dyn Fn(&str) -> bool) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
        ConfigFile::parse(&text, command, given).map_err(|error| format!("{}:{error}", path.display()))
    }

    /// The file's `text`; errors start with `LINE: `.
    pub fn parse(text: &str, command: &Command, given: &dyn Fn(&str) -> bool) -> Result<ConfigFile, String> {
        let table: toml::Table = toml::from_str(text).map_err(|error| toml_error(text, &error))?;
        let line_of = |key: &str, nth: usize| key_line(text, key, nth);
        let mut file = ConfigFile::default();
        for (key, value) in &table {
            match key.as_str() {
                "site" => {
                    let Value::Array(tables) = value else {
                        return Err(format!("{}: site: use [[site]] tables", line_of("site", 0)));
                    };
                    for (nth, table) in tables.iter().enumerate() {
                        file.sites.push(site_table(text, table, command, key_line(text, "[[site]]", nth))?);
                    }
                }
                "unknown_host" => {
                    file.unknown_host = match value.as_str() {
                        Some("default") => UnknownHost::Default,
                        Some("404") => UnknownHost::NotFound,
                        Some("close") => UnknownHost::Close,
                        _ => {
                            let line = line_of(key, 0);
                            return Err(format!("{line}: unknown_host: \"default\", \"404\" or \"close\""));
                        }
                    }
                }
                "acme" => {
                    let args = acme_table_args(command, value, None)
                        .map_err(|error| format!("{}: acme: {error}", line_of(key, 0)))?;
                    file.lines.push((key.clone(), line_of(key, 0)));
                    file.args.extend(args);
                }
                _ if given(&key.replace('_', "-")) => {} // the command line wins
                "root" => {
                    let mut args = flag_args(command, key, value)
                        .map_err(|error| format!("{}: {error}", line_of(key, 0)))?;
                    file.root = args.pop();
                }
                _ => {
                    file.lines.push((key.clone(), line_of(key, 0)));
                    let args = flag_args(command, key, value)
                        .map_err(|error| format!("{}: {error}", line_of(key, 0)))?;
                    file.args.extend(args);
                }
            }
        }
        if file.sites.iter().filter(|site| site.default).count() > 1 {
            return Err(format!("{}: more than one site says default = true", key_line(text, "[[site]]", 0)));
        }
        Ok(file)
    }
}

fn site_table(text: &str, value: &Value, command: &Command, line: usize) -> Result<SiteTable, String> {
    let Value::Table(table) = value else { return Err(format!("{line}: site: not a table")) };
    let mut site = SiteTable { names: Vec::new(), default: false, args: Vec::new(), line };
    if !table.contains_key("root") {
        return Err(format!("{line}: [[site]] without a root"));
    }
    let mut acme = None;
    for (key, value) in table {
        let key_line = key_line_after(text, key, line);
        let at = |message: String| format!("{key_line}: [[site]] {key}: {message}");
        match key.as_str() {
            "names" => {
                let names = value.as_array().ok_or_else(|| at("a list of host names".to_owned()))?;
                for name in names {
                    let name = name.as_str().ok_or_else(|| at("a list of host names".to_owned()))?;
                    site.names.push(SiteName::parse(name).map_err(at)?);
                }
            }
            "default" => site.default = value.as_bool().ok_or_else(|| at("true or false".to_owned()))?,
            "acme" => acme = Some((value, key_line)),
            _ if SITE_KEYS.contains(&key.as_str()) => {
                site.args.extend(flag_args(command, key, value).map_err(at)?)
            }
            _ => {
                return Err(at(format!(
                    "not a per-site key (those are names, default, {})",
                    SITE_KEYS.join(", ")
                )));
            }
        }
    }
    // After the loop: the site's names are its certificate's.
    if let Some((value, key_line)) = acme {
        let args = acme_table_args(command, value, Some(&site.names))
            .map_err(|error| format!("{key_line}: [[site]] acme: {error}"))?;
        site.args.extend(args);
    }
    Ok(site)
}

/// `acme = { email = "...", directory = "...", challenge = "...", ca_roots = "...", eab = { kid =
/// "...", hmac_key = "..." } }` as the `--acme-*` flags. At the top level it names its
/// certificate's `names`; in a `[[site]]` the site's names are used (`site_names`), and an
/// empty table takes the top level's settings.
fn acme_table_args(
    command: &Command,
    value: &Value,
    site_names: Option<&[SiteName]>,
) -> Result<Vec<OsString>, String> {
    let Value::Table(table) = value else { return Err("a table: acme = { email = \"...\", ... }".into()) };
    let mut args = Vec::new();
    for (key, value) in table {
        let flag = match key.as_str() {
            "email" | "directory" | "challenge" | "ca_roots" => format!("acme_{key}"),
            "names" if site_names.is_none() => "acme_domain".to_owned(),
            "eab" => {
                let Value::Table(eab) = value else {
                    return Err("eab = { kid = \"...\", hmac_key = \"...\" }".into());
                };
                for (part, value) in eab {
                    match part.as_str() {
                        "kid" | "hmac_key" => {
                            args.extend(flag_args(command, &format!("acme_eab_{part}"), value)?)
                        }
                        _ => return Err(format!("eab.{part}: eab has kid and hmac_key")),
                    }
                }
                continue;
            }
            _ => {
                let keys = if site_names.is_some() { "" } else { "names, " };
                return Err(format!(
                    "{key}: not an acme key ({keys}email, directory, challenge, ca_roots, eab)"
                ));
            }
        };
        args.extend(flag_args(command, &flag, value)?);
    }
    for name in site_names.into_iter().flatten() {
        match name {
            SiteName::Exact(name) => args.extend([OsString::from("--acme-domain"), OsString::from(name)]),
            SiteName::AnyLabelUnder(parent) => {
                return Err(format!(
                    "*.{parent}: a wildcard takes DNS-01, which the built-in client does not do"
                ));
            }
        }
    }
    if site_names.is_some_and(<[SiteName]>::is_empty) {
        return Err("a site without names has no names to ask a certificate for".into());
    }
    Ok(args)
}

/// `key = value` as the arguments of the flag it names (its parser reads them with the rest).
fn flag_args(command: &Command, key: &str, value: &Value) -> Result<Vec<OsString>, String> {
    let long = key.replace('_', "-");
    let arg = setting(command, &long).ok_or_else(|| format!("{key}: no such setting"))?;
    let flag = OsString::from(format!("--{long}"));
    let text = |value: &Value| -> Result<String, String> {
        match value {
            Value::String(text) => Ok(text.clone()),
            Value::Integer(number) => Ok(number.to_string()),
            Value::Float(number) => Ok(number.to_string()),
            _ => Err(format!("{key}: expected a string or a number")),
        }
    };
    let values_per_use = arg.get_num_args().map_or(1, |range| range.min_values().max(1));
    let mut args = Vec::new();
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, Value::Boolean(on)) => args.extend(on.then(|| flag.clone())),
        (ArgAction::SetTrue, _) => return Err(format!("{key}: true or false")),
        (ArgAction::Append, Value::Array(items)) => {
            for item in items {
                let group = match item {
                    Value::Array(group) if values_per_use > 1 => {
                        group.iter().map(text).collect::<Result<Vec<_>, _>>()?
                    }
                    item if values_per_use == 1 => vec![text(item)?],
                    _ => return Err(format!("{key}: each item is a list of {values_per_use} strings")),
                };
                if group.len() != values_per_use {
                    return Err(format!("{key}: each item is a list of {values_per_use} strings"));
                }
                args.push(flag.clone());
                args.extend(group.into_iter().map(OsString::from));
            }
        }
        // One value of a repeatable one-value flag: `tls_cert = "a.pem"` for `["a.pem"]`.
        (ArgAction::Append, value) if values_per_use == 1 => {
            args.extend([flag, OsString::from(text(value)?)])
        }
        (ArgAction::Append, _) => return Err(format!("{key}: expected a list")),
        (_, value) => {
            let value = text(value)?;
            if !arg.is_positional() {
                args.push(flag);
            }
            args.push(OsString::from(value));
        }
    }
    Ok(args)
}

/// The argument a setting names: a flag by its long name, or the positional `root`.
pub fn setting<'c>(command: &'c Command, name: &str) -> Option<&'c clap::Arg> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(name) || (arg.is_positional() && arg.get_id() == name))
}

/// The line (from 1) where `key` is set for the `nth` time, or where the `nth` `[[site]]` is.
fn key_line(text: &str, key: &str, nth: usize) -> usize {
    let starts = |line: &str| {
        let line = line.trim_start();
        match key.starts_with('[') {
            true => line.starts_with(key),
            false => line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')),
        }
    };
    text.lines().enumerate().filter(|(_, line)| starts(line)).nth(nth).map_or(1, |(index, _)| index + 1)
}

/// The first line after `start` (a `[[site]]` line) that sets `key`.
fn key_line_after(text: &str, key: &str, start: usize) -> usize {
    let rest: String = text.lines().skip(start).collect::<Vec<_>>().join("\n");
    start + key_line(&rest, key, 0)
}

/// toml's message, as `LINE: message`.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let line = error.span().map_or(1, |span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    format!("{line}: {}", error.message())
}

/// The first line of clap's message, without its `error: `.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim_start_matches("error: ")
}

impl ConfigFile {
    /// Where the file sets the flag `--long`, if it does: for a value its parser refused.
    pub fn line_of_flag(&self, long: &str) -> Option<usize> {
        self.lines.iter().find(|(key, _)| key.replace('_', "-") == long).map(|&(_, line)| line)
    }
}
