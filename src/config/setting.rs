//! The machinery behind the settings table in `mod.rs`: how a setting's value is read from
//! text (the same parser for flags, `ROOMCAST_*` variables, TOML and built-in defaults), and
//! the macro that turns one row per setting into the command line, the file merge and
//! [`super::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A setting's value type: parsed from text wherever the value comes from.
pub trait Setting: Sized + Clone + Send + Sync + 'static {
    fn parse(s: &str) -> Result<Self, String>;
}

impl Setting for usize {
    fn parse(s: &str) -> Result<Self, String> {
        s.trim().parse().map_err(|_| format!("'{s}' is not a non-negative whole number"))
    }
}

impl Setting for bool {
    fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!("'{s}' is not true or false")),
        }
    }
}

impl Setting for String {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(s.to_string())
    }
}

impl Setting for PathBuf {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(PathBuf::from(s))
    }
}

impl Setting for SocketAddr {
    fn parse(s: &str) -> Result<Self, String> {
        s.trim().parse().map_err(|_| format!("'{s}' is not an address such as 127.0.0.1:7800"))
    }
}

impl Setting for Duration {
    fn parse(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim()).map_err(|e| format!("'{s}' is not a duration ({e}; e.g. 25s, 500ms, 1m)"))
    }
}

/// A node id: up to 8 hex digits (it is part of every clientId).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeId(pub u32);

impl Setting for NodeId {
    fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() || t.len() > 8 {
            return Err(format!("'{s}' is not 1 to 8 hex digits"));
        }
        u32::from_str_radix(t, 16).map(NodeId).map_err(|_| format!("'{s}' is not 1 to 8 hex digits"))
    }
}

/// The clap value parser of a setting type.
pub fn arg<T: Setting>(s: &str) -> Result<T, String> {
    T::parse(s)
}

/// A TOML value as the text a flag would carry.
pub fn toml_text(key: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        // A list (allowed_origins = ["https://a.example", "*.b.example"]) is the
        // comma-separated string the flag and the environment take.
        toml::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().ok_or_else(|| format!("{key}: a list holds strings only")))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        _ => Err(format!("{key}: expected a string, number, boolean or a list of strings")),
    }
}

/// `[default: …]` for a setting's help line.
macro_rules! default_suffix {
    (none) => {
        ""
    };
    ($lit:literal) => {
        concat!(" [default: ", $lit, "]")
    };
    (($e:expr, $text:literal)) => {
        concat!(" [default: ", $text, "]")
    };
}

/// The resolved type of a setting: `Option<T>` for settings without a default.
macro_rules! resolved_ty {
    (none, $ty:ty) => { Option<$ty> };
    ($d:tt, $ty:ty) => { $ty };
}

/// The resolved value of a setting: given, or its default.
macro_rules! resolved_value {
    (none, $ty:ty, $v:expr) => {
        $v
    };
    ($lit:literal, $ty:ty, $v:expr) => {
        match $v {
            Some(v) => v,
            None => <$ty as $crate::config::setting::Setting>::parse($lit).expect("built-in defaults parse"),
        }
    };
    (($e:expr, $text:literal), $ty:ty, $v:expr) => {
        match $v {
            Some(v) => v,
            None => $e,
        }
    };
}

/// One row per setting: `key: Type = default, "ENV", "help";` where the default is a literal
/// (parsed like any input), `(expression, "text for --help")`, or `none` (unset: `Option`).
/// Generates [`super::ServeArgs`] (flags and env), its TOML merge, and the resolved
/// [`super::Settings`].
macro_rules! settings {
    ($( $(#[$attr:meta])* $key:ident : $ty:ty = $default:tt, $env:literal, $help:literal; )*) => {
        /// Server options from the command line and `ROOMCAST_*` variables (the TOML file is
        /// merged under them by [`ServeArgs::resolve`]).
        #[derive(clap::Args, Debug, Default)]
        pub struct ServeArgs {
            /// TOML config file with the same keys (snake_case)
            #[arg(long, env = "ROOMCAST_CONFIG")]
            pub config: Option<std::path::PathBuf>,
            $(
                #[arg(long, env = $env, value_parser = $crate::config::setting::arg::<$ty>,
                      help = concat!($help, default_suffix!($default)))]
                $(#[$attr])*
                pub $key: Option<$ty>,
            )*
        }

        /// Every setting, resolved: the value given, else its default.
        // The field docs are the command-line help texts (plain text, not rustdoc markup).
        #[allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links, rustdoc::bare_urls)]
        #[derive(Clone, Debug)]
        pub struct Settings {
            $( #[doc = concat!($help, default_suffix!($default))] pub $key: resolved_ty!($default, $ty), )*
        }

        /// Every key: (TOML key, environment variable).
        pub const KEYS: &[(&str, &str)] = &[$((stringify!($key), $env),)*];

        impl ServeArgs {
            /// Fills what the command line and environment left unset from the config file.
            fn merge_file(&mut self, table: toml::Table) -> Result<(), String> {
                for (key, value) in table {
                    match key.as_str() {
                        $(stringify!($key) => if self.$key.is_none() {
                            let text = $crate::config::setting::toml_text(&key, &value)?;
                            self.$key = Some(<$ty as $crate::config::setting::Setting>::parse(&text)
                                .map_err(|e| format!("{key}: {e}"))?);
                        },)*
                        _ => return Err(format!("unknown key '{key}' (keys are the flags' names in snake_case, e.g. max_message_size)")),
                    }
                }
                Ok(())
            }

            /// Every setting with its default where none was given.
            fn settings(self) -> Settings {
                Settings { $( $key: resolved_value!($default, $ty, self.$key), )* }
            }
        }
    };
}

pub(crate) use {default_suffix, resolved_ty, resolved_value, settings};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_list_is_the_comma_separated_string() {
        let v: toml::Table = toml::from_str("a = [\"x\", \"*.y\"]\nb = [1]\nc = {}").unwrap();
        assert_eq!(toml_text("a", &v["a"]).unwrap(), "x,*.y");
        assert_eq!(toml_text("b", &v["b"]).unwrap_err(), "b: a list holds strings only");
        assert!(toml_text("c", &v["c"]).unwrap_err().contains("a list of strings"));
    }

    #[test]
    fn parsers_explain_bad_values() {
        assert_eq!(Duration::parse("1m").unwrap(), Duration::from_secs(60));
        assert!(Duration::parse("soon").unwrap_err().contains("duration"));
        assert!(bool::parse("on").unwrap());
        assert!(bool::parse("maybe").is_err());
        assert!(usize::parse("-1").is_err());
        assert_eq!(NodeId::parse("00ff").unwrap(), NodeId(255));
        assert!(NodeId::parse("123456789").is_err());
        assert!(NodeId::parse("zz").is_err());
    }
}
