//! The deployment files describe what the product does: the cluster configuration that
//! deploy/compose.yaml and deploy/k8s mount passes `yujing check` with the repository's sites,
//! routes and rules; the compose file starts every service the cluster needs with two yujing
//! instances; the Kubernetes manifest runs two replicas with the probes the API answers.

use marked_yaml::Node;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(text: &str) -> Node {
    marked_yaml::parse_yaml(0, text).expect("valid YAML")
}

fn get<'a>(n: &'a Node, path: &[&str]) -> Option<&'a Node> {
    path.iter()
        .try_fold(n, |n, key| n.as_mapping().and_then(|m| m.get_node(key)))
}

fn text(n: &Node, path: &[&str]) -> Option<String> {
    get(n, path)
        .and_then(|v| v.as_scalar())
        .map(|s| s.as_str().to_string())
}

#[test]
fn the_cluster_configurations_pass_yujing_check() {
    for toml in ["deploy/cluster/yujing.toml", "deploy/cluster/local.toml"] {
        check(toml);
    }
}

/// `yujing check` on `toml` with the repository's sites, routes and rules and the environment
/// compose gives the instances.
fn check(toml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::copy(root().join(toml), p.join("yujing.toml")).expect("toml");
    for f in ["sites.yaml", "routes.yaml"] {
        std::fs::copy(root().join(f), p.join(f)).expect("copy");
    }
    // the folders compose mounts and the manifest's ConfigMaps carry
    for (dir, ext) in [("rules", "yaml"), ("models", "toml")] {
        std::fs::create_dir(p.join(dir)).expect(dir);
        for e in std::fs::read_dir(root().join(dir)).expect(dir) {
            let e = e.expect("entry");
            if e.path().extension().is_some_and(|x| x == ext) {
                std::fs::copy(e.path(), p.join(dir).join(e.file_name())).expect("copy");
            }
        }
    }
    // the secrets compose and the Kubernetes Secret pass in
    let compose =
        yaml(&std::fs::read_to_string(root().join("deploy/compose.yaml")).expect("compose"));
    let env = get(&compose, &["services", "yujing", "environment"])
        .and_then(|e| e.as_mapping())
        .expect("yujing's environment");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_yujing"));
    for (k, v) in env.iter() {
        let v = v.as_scalar().map(|s| s.as_str()).unwrap_or_default();
        // `${NAME:-default}` as compose substitutes it without NAME set
        let v = match v.split_once(":-") {
            Some((head, tail)) => {
                let default = tail.trim_end_matches('}');
                let before = head.rsplit_once("${").map_or("", |(b, _)| b);
                let after = tail.split_once('}').map_or("", |(_, a)| a);
                format!("{before}{default}{after}")
            }
            None => v.to_string(),
        };
        cmd.env(k.as_str(), v);
    }
    let out = cmd.arg("check").arg(p).output().expect("yujing check");
    assert!(
        out.status.success(),
        "{toml}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compose_starts_the_broker_store_mqtt_prometheus_and_two_instances() {
    let c = yaml(&std::fs::read_to_string(root().join("deploy/compose.yaml")).expect("compose"));
    for s in [
        "kafka",
        "topics",
        "mosquitto",
        "postgres",
        "prometheus",
        "yujing",
    ] {
        assert!(get(&c, &["services", s]).is_some(), "service {s}");
    }
    assert_eq!(
        text(&c, &["services", "yujing", "deploy", "replicas"]).as_deref(),
        Some("2")
    );
    // the readings and tickets topics have the same partition count (co-partitioned sites)
    let topics = text(&c, &["services", "topics", "command"])
        .or_else(|| {
            get(&c, &["services", "topics", "command"])
                .and_then(|n| n.as_sequence())
                .and_then(|s| s.get_scalar(0))
                .map(|s| s.as_str().to_string())
        })
        .expect("topic creation");
    assert!(
        topics.contains("yujing.readings:8") && topics.contains("yujing.tickets:8"),
        "{topics}"
    );
    // what compose mounts exists
    for f in [
        "deploy/cluster/yujing.toml",
        "deploy/cluster/mosquitto.conf",
        "deploy/cluster/prometheus.yml",
        "deploy/alerts.yml",
        "deploy/Dockerfile",
    ] {
        assert!(root().join(f).exists(), "{f}");
    }
    let toml = std::fs::read_to_string(root().join("deploy/cluster/yujing.toml")).expect("toml");
    for needle in [
        "brokers = \"kafka:9092\"",
        "readings_topic = \"yujing.readings\"",
        "tickets_topic = \"yujing.tickets\"",
        "host = \"mosquitto\"",
        "[cluster]",
    ] {
        assert!(toml.contains(needle), "{needle}");
    }
}

#[test]
fn kubernetes_runs_two_replicas_with_the_apis_probes() {
    let text_all =
        std::fs::read_to_string(root().join("deploy/k8s/yujing.yaml")).expect("manifest");
    let docs: Vec<Node> = text_all.split("\n---\n").map(yaml).collect();
    let kinds: Vec<String> = docs.iter().filter_map(|d| text(d, &["kind"])).collect();
    assert_eq!(kinds, ["Deployment", "Service", "PodDisruptionBudget"]);
    let dep = &docs[0];
    assert_eq!(text(dep, &["spec", "replicas"]).as_deref(), Some("2"));
    let container = get(dep, &["spec", "template", "spec", "containers"])
        .and_then(|c| c.as_sequence())
        .and_then(|c| c.get_node(0))
        .expect("container");
    assert_eq!(
        text(container, &["readinessProbe", "httpGet", "path"]).as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        text(container, &["livenessProbe", "httpGet", "path"]).as_deref(),
        Some("/healthz")
    );
}
