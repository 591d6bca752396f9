//! Finds and loads `config.yaml`.

use chat_core::config::Config;
use std::path::{Path, PathBuf};

/// The checked-in `config.yaml`, used when there is no file to read.
pub const BUILT_IN_CONFIG: &str = include_str!("../../config.yaml");

/// Where a configuration came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// The file read; `None` for the built-in configuration.
    pub path: Option<PathBuf>,
}

/// Reads `--config PATH` if given; otherwise `config.yaml` in the current directory if it
/// exists, else the built-in default.
pub fn load(flag: Option<&Path>) -> Result<Loaded, String> {
    let path = match flag {
        Some(path) => path.to_owned(),
        None if Path::new("config.yaml").exists() => PathBuf::from("config.yaml"),
        None => {
            let config = Config::parse(BUILT_IN_CONFIG).map_err(|e| e.to_string())?;
            return Ok(Loaded { config, path: None });
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let config = Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Loaded {
        config,
        path: Some(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_config_parses() {
        assert_eq!(Config::parse(BUILT_IN_CONFIG).unwrap().replicas.len(), 3);
    }

    #[test]
    fn a_missing_flagged_file_is_an_error_naming_it() {
        let err = load(Some(Path::new("/nonexistent/chat.yaml"))).unwrap_err();
        assert!(err.contains("/nonexistent/chat.yaml"), "{err}");
    }
}
