//! The deployment files: the Kubernetes manifests (`deploy/kubernetes/`) are valid against the
//! Kubernetes API's schemas, hold the security properties docs/production.md promises, and
//! configure Warden with settings `warden serve` accepts. They cannot be applied here (no
//! cluster); this is what can be checked without one.

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use testkit::warden_command;

fn manifests_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes"
    ))
}

fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every object in the manifests.
fn objects() -> Vec<Value> {
    let mut objects = Vec::new();
    for file in manifest_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).unwrap();
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    objects
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn the_kubernetes_manifests_pass_the_kubernetes_schemas_strictly() {
    let files = manifest_files();
    assert!(files.len() >= 2, "{files:?}");
    // The module of the python3 that scripts/test installed it for, whatever is on PATH.
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .args(["--kubernetes-version", "1.30.0"])
        .args(&files)
        .output()
        .expect(
            "kubernetes-validate runs (scripts/test installs deploy/kubernetes/requirements.txt)",
        );
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_workload_runs_restricted_probed_limited_and_fenced() {
    let objects = objects();
    let namespaces = of_kind(&objects, "Namespace");
    assert_eq!(namespaces.len(), 1);
    let labels = &namespaces[0]["metadata"]["labels"];
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels[format!("pod-security.kubernetes.io/{mode}")],
            "restricted"
        );
    }

    let workloads: Vec<&Value> = objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
        .collect();
    assert!(!workloads.is_empty());
    for workload in &workloads {
        let name = &workload["metadata"]["name"];
        let pod = &workload["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
            for resource in ["cpu", "memory"] {
                assert!(
                    container["resources"]["limits"][resource].is_string(),
                    "{name}"
                );
                assert!(
                    container["resources"]["requests"][resource].is_string(),
                    "{name}"
                );
            }
            assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
            assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        }
        // Secrets come as files readable by the owner only, never as environment values.
        let secret_volumes: Vec<&Value> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|volume| volume.get("secret").is_some())
            .collect();
        assert!(!secret_volumes.is_empty(), "{name}");
        for volume in secret_volumes {
            assert_eq!(volume["secret"]["defaultMode"], 0o400, "{name}");
        }
        let text = serde_json::to_string(pod).unwrap();
        assert!(
            !text.contains("secretKeyRef"),
            "{name}: a secret as an environment value"
        );

        // A disruption budget keeps one replica up.
        let selector = &workload["spec"]["selector"]["matchLabels"];
        assert!(
            of_kind(&objects, "PodDisruptionBudget")
                .iter()
                .any(|budget| &budget["spec"]["selector"]["matchLabels"] == selector),
            "{name} has no disruption budget"
        );
    }

    // Default deny both ways, and only named flows on top.
    let policies = of_kind(&objects, "NetworkPolicy");
    assert!(policies.iter().any(|policy| {
        policy["spec"]["podSelector"] == serde_json::json!({})
            && policy["spec"]["policyTypes"] == serde_json::json!(["Ingress", "Egress"])
            && policy["spec"].get("ingress").is_none()
            && policy["spec"].get("egress").is_none()
    }));
    for policy in &policies {
        for rule in policy["spec"]["egress"].as_array().into_iter().flatten() {
            assert!(rule["to"].is_array() && rule["ports"].is_array(), "{rule}");
        }
    }
}

/// The workload's configuration file and environment, with every secret file it names made
/// here with a valid value: `warden config check` accepts them, as `serve` would.
#[test]
fn the_manifests_configure_warden_with_accepted_settings() {
    let objects = objects();
    let config_map = of_kind(&objects, "ConfigMap")[0];
    let workload = of_kind(&objects, "StatefulSet")[0];
    let container = &workload["spec"]["template"]["spec"]["containers"][0];
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(&config, config_map["data"]["warden.toml"].as_str().unwrap()).unwrap();
    let (pki_key, secret_key) = ("ab".repeat(32), "cd".repeat(32));
    let values: [(&str, &str); 3] = [
        (
            "WARDEN_DATABASE_URL_FILE",
            "postgres://warden:secret@db.example/warden",
        ),
        ("WARDEN_PKI_ENCRYPTION_KEY_FILE", &pki_key),
        ("WARDEN_OAUTH_SECRET_KEY_FILE", &secret_key),
    ];
    let mut command = warden_command(&["config", "check", config.to_str().unwrap()]);
    for variable in container["env"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        let value = variable["value"].as_str().unwrap();
        match values.iter().find(|(secret, _)| *secret == name) {
            Some((_, secret)) => {
                let file = dir.path().join(name);
                std::fs::write(&file, secret).unwrap();
                command.env(name, &file);
            }
            None if name == "WARDEN_CONFIG" => {}
            None => {
                command.env(name, value);
            }
        }
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
