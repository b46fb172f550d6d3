//! Inventory types and their item schemas.
//!
//! A node's inventory is one list of items per type. Built-in types have a fixed schema (the
//! structs below, serialised with these field names on the wire, in the store and in the API);
//! custom types are `Custom:Name` with string-valued attributes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted type name, as AWS allows for custom types.
pub const MAX_TYPE_NAME: usize = 100;

/// Types whose items the agent collects.
pub const COLLECTED: &[&str] = &["InstanceInformation", "Application", "Service", "Network", "Hardware", "File"];
/// Types the server writes (vulnerability findings and compliance); agents may not send them.
pub const SERVER_WRITTEN: &[&str] = &["Finding", "Compliance"];

/// A valid inventory type name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InventoryType {
    /// One of [`COLLECTED`] or [`SERVER_WRITTEN`].
    Builtin(&'static str),
    /// `Custom:Name`; holds the whole name.
    Custom(String),
}

/// Why a type name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error(
        "unknown inventory type `{0}`; the types are {known} and custom types `Custom:Name`",
        known = all_builtin().join(", ")
    )]
    Unknown(String),
    #[error(
        "`{0}` is not a valid custom type name: it must be `Custom:` followed by a name that starts with a capital \
         letter and uses only letters, digits, `_`, `-` and `.`, at most {MAX_TYPE_NAME} characters in all"
    )]
    BadCustom(String),
    #[error("custom type `{0}` collides with the built-in type `{1}`; choose another name")]
    CollidesWithBuiltin(String, &'static str),
}

fn all_builtin() -> Vec<&'static str> {
    COLLECTED.iter().chain(SERVER_WRITTEN).copied().collect()
}

impl InventoryType {
    /// Parses a type name as users and agents write it.
    pub fn parse(name: &str) -> Result<Self, TypeError> {
        if let Some(builtin) = all_builtin().into_iter().find(|b| *b == name) {
            return Ok(Self::Builtin(builtin));
        }
        let Some(rest) = name.strip_prefix("Custom:") else {
            // `AWS:Application` and friends: say what the name is here.
            if let Some(builtin) = name.split_once(':').and_then(|(_, b)| all_builtin().into_iter().find(|x| *x == b)) {
                return Err(TypeError::CollidesWithBuiltin(name.to_owned(), builtin));
            }
            return Err(TypeError::Unknown(name.to_owned()));
        };
        let valid = name.len() <= MAX_TYPE_NAME
            && rest.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(TypeError::BadCustom(name.to_owned()));
        }
        if let Some(builtin) = all_builtin().into_iter().find(|b| b.eq_ignore_ascii_case(rest)) {
            return Err(TypeError::CollidesWithBuiltin(name.to_owned(), builtin));
        }
        Ok(Self::Custom(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Builtin(name) => name,
            Self::Custom(name) => name,
        }
    }

    /// The item fields and how they compare; None for custom types (any attribute, text).
    pub fn fields(&self) -> Option<&'static [(&'static str, FieldKind)]> {
        use FieldKind::{Integer, List, Nested, Text, Version};
        Some(match self.as_str() {
            "InstanceInformation" => &[
                ("hostname", Text),
                ("os_name", Text),
                ("os_version", Text),
                ("os_id", Text),
                ("kernel", Text),
                ("arch", Text),
                ("agent_version", Text),
                ("addresses", List),
                ("boot_time", Integer),
            ],
            "Application" => &[
                ("name", Text),
                ("version", Version),
                ("release", Text),
                ("epoch", Text),
                ("arch", Text),
                ("source_name", Text),
                ("source_version", Version),
                ("package_manager", Text),
                ("install_time", Integer),
            ],
            "Service" => &[("name", Text), ("state", Text), ("sub_state", Text), ("enabled", Text)],
            "Network" => &[("name", Text), ("mac", Text), ("addresses", List), ("mtu", Integer)],
            "Hardware" => &[
                ("cpu_model", Text),
                ("cpu_cores", Integer),
                ("cpu_threads", Integer),
                ("memory_bytes", Integer),
                ("disks", Nested),
            ],
            "File" => &[
                ("path", Text),
                ("size", Integer),
                ("mode", Text),
                ("owner", Text),
                ("group", Text),
                ("mtime", Integer),
                ("sha256", Text),
                ("link_target", Text),
                ("error", Text),
            ],
            "Finding" => &[
                ("run_id", Text),
                ("rule", Text),
                ("advisory_id", Text),
                ("aliases", List),
                ("package", Text),
                ("installed_version", Text),
                ("fixed_version", Text),
                ("severity", Text),
                ("score", Text),
                ("title", Text),
            ],
            "Compliance" => &[("compliance_type", Text), ("status", Text), ("severity", Text), ("detail", Text)],
            _ => return None,
        })
    }

    /// The field that names an item (used to index items for fast equality queries).
    pub fn key_field(&self) -> Option<&'static str> {
        match self.as_str() {
            "Application" | "Service" | "Network" => Some("name"),
            "File" => Some("path"),
            "Finding" => Some("package"),
            "InstanceInformation" => Some("hostname"),
            _ => None,
        }
    }

    /// Checks the items an agent sent (each one's JSON text) against this type's schema and
    /// returns each one's key (the value of [`Self::key_field`], for types that have one).
    /// Parsed straight from the text into the schema's struct: a thousand packages a report,
    /// at fleet scale, made a `serde_json::Value` of each the ingest's largest cost.
    pub fn check_items<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> Result<Vec<Option<String>>, String> {
        if SERVER_WRITTEN.contains(&self.as_str()) {
            return Err(format!("{self} is written by the server; agents cannot send it"));
        }
        texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| self.check_item(text).map_err(|what| format!("item {i} of {self}: {what}")))
            .collect()
    }

    fn check_item(&self, text: &str) -> Result<Option<String>, String> {
        Ok(match self.as_str() {
            "InstanceInformation" => Some(parse::<InstanceInformation>(text)?.hostname),
            "Application" => Some(parse::<Application>(text)?.name),
            "Service" => Some(parse::<Service>(text)?.name),
            "Network" => Some(parse::<NetworkInterface>(text)?.name),
            "Hardware" => {
                parse::<Hardware>(text)?;
                None
            }
            "File" => Some(parse::<FileItem>(text)?.path),
            _ => {
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(text).map_err(|_| "is not an object".to_owned())?;
                if let Some((key, _)) = object.iter().find(|(_, v)| !v.is_string()) {
                    return Err(format!("attribute `{key}` is not a string"));
                }
                None
            }
        })
    }
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

impl fmt::Display for InventoryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a field's values compare in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    /// A package version, ordered by the item's package manager.
    Version,
    Integer,
    /// A list of strings: `=` means "contains this element".
    List,
    /// Structured; shown, not filtered.
    Nested,
}

/// `InstanceInformation`: one item per node.
#[cfg_attr(test, derive(Default))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceInformation {
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub os_id: String,
    pub kernel: String,
    pub arch: String,
    pub agent_version: String,
    pub addresses: Vec<String>,
    /// Unix seconds.
    pub boot_time: Option<i64>,
}

/// `Application`: one installed package.
#[cfg_attr(test, derive(Default))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    /// The full version exactly as the package manager states it: dpkg's `Version` field,
    /// rpm's `[EPOCH:]VERSION-RELEASE`, apk's `V`.
    pub version: String,
    /// rpm's RELEASE, dpkg's Debian revision, apk's `-rN`.
    pub release: Option<String>,
    pub epoch: Option<String>,
    pub arch: Option<String>,
    /// The package the advisories name: dpkg's `Source`, rpm's source rpm name, apk's origin.
    pub source_name: Option<String>,
    pub source_version: Option<String>,
    /// `dpkg`, `rpm` or `apk`.
    pub package_manager: String,
    /// Unix seconds, where the database records it.
    pub install_time: Option<i64>,
}

/// `Service`: one systemd unit.
#[cfg_attr(test, derive(Default))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// `active`, `inactive`, `failed`, ... or `unknown` when systemd is not running it.
    pub state: String,
    pub sub_state: Option<String>,
    /// The unit file state: `enabled`, `disabled`, `static`, `masked`, ...
    pub enabled: Option<String>,
}

/// `Network`: one interface.
#[cfg_attr(test, derive(Default))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    pub name: String,
    pub mac: Option<String>,
    pub addresses: Vec<String>,
    pub mtu: Option<i64>,
}

/// `Hardware`: one item per node.
#[cfg_attr(test, derive(Default))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    pub cpu_model: Option<String>,
    pub cpu_cores: Option<i64>,
    pub cpu_threads: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub disks: Vec<Disk>,
}

/// A mounted file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub device: String,
    pub mount: String,
    pub fs_type: String,
    pub size_bytes: Option<i64>,
}

/// `File`: one watched path.
#[cfg_attr(test, derive(Default))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileItem {
    pub path: String,
    pub size: Option<i64>,
    /// Permission bits in octal, e.g. `0644`.
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Unix seconds.
    pub mtime: Option<i64>,
    pub sha256: Option<String>,
    /// Where a symbolic link points.
    pub link_target: Option<String>,
    /// Why the file could not be read (unreadable, dangling link); the other fields say what
    /// could still be seen.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(InventoryType::parse("Application"), Ok(InventoryType::Builtin("Application")));
        assert_eq!(InventoryType::parse("Custom:Rack_Info"), Ok(InventoryType::Custom("Custom:Rack_Info".into())));
        for bad in ["application", "Custom:", "Custom:rack", "custom:Rack", "Custom:Ra ck", "Custom:A/b"] {
            assert!(InventoryType::parse(bad).is_err(), "{bad}");
        }
        let long = format!("Custom:A{}", "b".repeat(100));
        assert!(matches!(InventoryType::parse(&long), Err(TypeError::BadCustom(_))));
        assert!(matches!(InventoryType::parse("Custom:Application"), Err(TypeError::CollidesWithBuiltin(_, _))));
        assert!(matches!(InventoryType::parse("AWS:Application"), Err(TypeError::CollidesWithBuiltin(_, _))));
        let unknown = InventoryType::parse("Packages").unwrap_err().to_string();
        assert!(unknown.contains("Application") && unknown.contains("Custom:Name"), "{unknown}");
    }

    #[test]
    fn items_are_checked_against_the_schema() {
        let app = InventoryType::parse("Application").expect("test input is valid");
        let good = serde_json::json!({"name": "a", "version": "1", "release": null, "epoch": null, "arch": "amd64",
            "source_name": null, "source_version": null, "package_manager": "dpkg", "install_time": null});
        let good = good.to_string();
        assert_eq!(app.check_items([good.as_str()]), Ok(vec![Some("a".to_owned())]));
        let extra = good.replacen('{', "{\"colour\":\"red\",", 1);
        assert!(app.check_items([good.as_str(), &extra]).unwrap_err().contains("item 1"));
        assert!(app.check_items(["[1]"]).unwrap_err().contains("item 0 of Application"));
        let custom = InventoryType::parse("Custom:Rack").expect("test input is valid");
        assert_eq!(custom.check_items([r#"{"row": "3"}"#]), Ok(vec![None]));
        assert!(custom.check_items([r#"{"row": 3}"#]).unwrap_err().contains("attribute `row` is not a string"));
        assert!(custom.check_items(["[]"]).unwrap_err().contains("is not an object"));
        assert!(InventoryType::parse("Finding").expect("test input is valid").check_items([]).is_err());
    }

    /// The key `check_items` returns is the item's `key_field`, for every type an agent sends.
    #[test]
    fn checked_keys_are_the_key_fields() {
        let samples = [
            (
                "InstanceInformation",
                serde_json::to_value(InstanceInformation { hostname: "h".into(), ..Default::default() }),
            ),
            ("Application", serde_json::to_value(Application { name: "n".into(), ..Default::default() })),
            ("Service", serde_json::to_value(Service { name: "s".into(), ..Default::default() })),
            ("Network", serde_json::to_value(NetworkInterface { name: "eth0".into(), ..Default::default() })),
            ("Hardware", serde_json::to_value(Hardware::default())),
            ("File", serde_json::to_value(FileItem { path: "/etc/x".into(), ..Default::default() })),
        ];
        for (name, item) in samples {
            let kind = InventoryType::parse(name).expect("builtin");
            let item = item.expect("serialises");
            let want = kind.key_field().map(|f| item[f].as_str().expect("a string key").to_owned());
            assert_eq!(kind.check_items([item.to_string().as_str()]), Ok(vec![want]), "{name}");
        }
    }
}
