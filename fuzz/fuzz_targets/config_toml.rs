//! Warden's configuration, as `warden serve` and `warden config check FILE` load it: a TOML file
//! (`server::config::Config`, checked by `Config::validate`), then `WARDEN_*` environment
//! variables and command-line flags on top (`server::config::load_from`).
//!
//! Input: the TOML file, optionally followed by a line `#ENV` and lines `NAME=VALUE`; a `NAME`
//! that starts with `WARDEN_` is an environment variable, any other is a flag's setting path
//! (`http.listen`). Variables ending in `_FILE` are left out: they name files to read.
//!
//! Properties: nothing panics; the file loaded through the layers is judged as the text parsed
//! and validated directly (same outcome, same settings); and a configuration that parses writes
//! back to TOML that parses to the same configuration with the same verdict.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use server::config::{Config, Settings, load_from};
use warden_fuzz::check;

/// A file of this process's own to hand the layers the TOML text, as `--config FILE` does.
fn config_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("warden-fuzz-config-{}.toml", std::process::id()))
    })
}

/// The settings as text to compare; the part URLs (a `HashMap`, whose order varies) sorted.
fn describe(settings: &Settings) -> String {
    let mut settings = settings.clone();
    let part_urls: std::collections::BTreeMap<_, _> = settings.gateway.part_urls.drain().collect();
    format!("{settings:?} {part_urls:?}")
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = warden_fuzz::text(data) else {
        return;
    };
    let (file_text, layers) = match text.split_once("\n#ENV\n") {
        Some((file_text, layers)) => (file_text, layers),
        None => (text, ""),
    };
    let mut environment = Vec::new();
    let mut flags = Vec::new();
    for line in layers.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.ends_with("_FILE") {
            continue;
        }
        if name.starts_with("WARDEN_") {
            environment.push((name.to_owned(), value.to_owned()));
        } else {
            flags.push((name.to_owned(), value.to_owned()));
        }
    }

    let parsed = toml::from_str::<Config>(file_text);
    let direct = parsed.as_ref().ok().map(|config| config.validate());

    // The file through the layers, alone: the same verdict as the text parsed directly.
    if std::fs::write(config_file(), file_text).is_err() {
        return;
    }
    let layered = load_from(Some(config_file()), Vec::new(), &[]);
    let direct_settings = direct
        .as_ref()
        .and_then(|validated| validated.as_ref().ok())
        .map(describe);
    let layered_settings = layered.as_ref().ok().map(describe);
    check!(
        "config-layers-agree",
        direct_settings == layered_settings,
        "the text parsed directly gave {direct_settings:?}, through the layers {layered_settings:?} ({:?})",
        layered.as_ref().err()
    );

    // Written back, the configuration reads the same and gets the same verdict.
    if let Ok(config) = &parsed
        && let Ok(written) = toml::to_string(config)
    {
        match toml::from_str::<Config>(&written) {
            Ok(again) => {
                check!(
                    "config-roundtrip",
                    format!("{config:?}") == format!("{again:?}"),
                    "written back as {written:?}, it reads {again:?}"
                );
                let verdict = |config: &Config| {
                    config
                        .validate()
                        .map(|settings| describe(&settings))
                        .map_err(|invalid| invalid.setting)
                };
                check!(
                    "config-roundtrip",
                    verdict(config) == verdict(&again),
                    "written back as {written:?}, the verdict changes"
                );
            }
            Err(error) => {
                check!(
                    "config-roundtrip",
                    false,
                    "written back as {written:?}, it does not parse: {error}"
                );
            }
        }
    }

    // The environment and flags on top.
    if !environment.is_empty() || !flags.is_empty() {
        let flags: Vec<(&str, String)> = flags
            .iter()
            .map(|(path, value)| (path.as_str(), value.clone()))
            .collect();
        let _ = load_from(Some(config_file()), environment, &flags);
    }
});
