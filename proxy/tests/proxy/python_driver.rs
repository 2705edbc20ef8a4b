//! The Python `cassandra-driver` through the proxy: every protocol version, compression, and
//! the authentication modes (`tests/python/through_proxy.py`).

use std::net::SocketAddr;

use ferry_proxy::Proxy;
use ferry_proxy::config::Secret;

use crate::harness::{Env, env, proxy_config, sim};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/through_proxy.py");

async fn run(
    proxy: SocketAddr,
    origin: SocketAddr,
    target: SocketAddr,
    version: u8,
    extra: &[&str],
) -> Result<String, String> {
    let mut args = vec![
        SCRIPT.to_owned(),
        proxy.to_string(),
        origin.to_string(),
        target.to_string(),
        version.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new("python3")
        .args(&args)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}\n{stderr}"))
    }
}

async fn suite(env: &Env, version: u8, extra: &[&str]) {
    let result = run(
        env.proxy.local_addr(),
        env.origin.addresses()[0],
        env.target.addresses()[0],
        version,
        extra,
    )
    .await;
    if let Err(e) = result {
        panic!("v{version} {extra:?}:\n{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_v3_with_lz4() {
    let env = env(30).await;
    suite(&env, 3, &["--compression", "lz4"]).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_v4_plain() {
    let env = env(31).await;
    suite(&env, 4, &[]).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_v4_with_lz4() {
    let env = env(32).await;
    suite(&env, 4, &["--compression", "lz4"]).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_v5_with_lz4_segments() {
    let env = env(33).await;
    suite(&env, 5, &["--compression", "lz4"]).await;
    env.stop().await;
}

/// Both clusters need auth: the client's credentials go to target, the proxy's own to origin
/// (zdm-proxy's default), then the reverse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_clusters_with_auth_in_both_credential_modes() {
    for (net, to_origin) in [(34u8, false), (35, true)] {
        let origin = sim(
            &format!("127.0.{net}.1"),
            vec![("ouser".into(), "opass".into())],
        )
        .await;
        let target = sim(
            &format!("127.0.{net}.2"),
            vec![("tuser".into(), "tpass".into())],
        )
        .await;
        let mut config = proxy_config(net, origin.addresses()[0], target.addresses()[0]);
        config.forward_client_credentials_to_origin = to_origin;
        let (client, proxy_side) = if to_origin {
            ("ouser:opass", &mut config.target)
        } else {
            ("tuser:tpass", &mut config.origin)
        };
        let (user, pass) = if to_origin {
            ("tuser", "tpass")
        } else {
            ("ouser", "opass")
        };
        proxy_side.username = Some(user.to_owned());
        proxy_side.password = Some(Secret::new(pass));
        let proxy = Proxy::start(config).await.unwrap();
        let env = Env {
            origin,
            target,
            proxy,
        };
        let ks = format!("--keyspace=auth{net}");
        suite(
            &env,
            4,
            &[
                "--auth",
                client,
                "--origin-auth",
                "ouser:opass",
                "--target-auth",
                "tuser:tpass",
                &ks,
            ],
        )
        .await;
        // Wrong client credentials: an authentication error, not a hang.
        let err = run(
            env.proxy.local_addr(),
            env.origin.addresses()[0],
            env.target.addresses()[0],
            4,
            &["--auth", "nobody:wrong"],
        )
        .await
        .unwrap_err();
        assert!(
            err.contains("AuthenticationFailed")
                || err.contains("Bad credentials")
                || err.contains("authentication"),
            "{err}"
        );
        env.stop().await;
    }
}

/// Only target needs auth: the client's credentials go there; origin needs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_target_with_auth() {
    let net = 36;
    let origin = sim(&format!("127.0.{net}.1"), Vec::new()).await;
    let target = sim(
        &format!("127.0.{net}.2"),
        vec![("tuser".into(), "tpass".into())],
    )
    .await;
    let config = proxy_config(net, origin.addresses()[0], target.addresses()[0]);
    let proxy = Proxy::start(config).await.unwrap();
    let env = Env {
        origin,
        target,
        proxy,
    };
    suite(
        &env,
        4,
        &["--auth", "tuser:tpass", "--target-auth", "tuser:tpass"],
    )
    .await;
    env.stop().await;
}

/// The proxy's own origin login fails: the client gets an authentication error naming origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_proxy_login_reaches_the_client() {
    let net = 37;
    let origin = sim(
        &format!("127.0.{net}.1"),
        vec![("ouser".into(), "opass".into())],
    )
    .await;
    let target = sim(
        &format!("127.0.{net}.2"),
        vec![("tuser".into(), "tpass".into())],
    )
    .await;
    let mut config = proxy_config(net, origin.addresses()[0], target.addresses()[0]);
    config.origin.username = Some("ouser".into());
    config.origin.password = Some(Secret::new("wrong"));
    let proxy = Proxy::start(config).await.unwrap();
    let env = Env {
        origin,
        target,
        proxy,
    };
    let err = run(
        env.proxy.local_addr(),
        env.origin.addresses()[0],
        env.target.addresses()[0],
        4,
        &["--auth", "tuser:tpass"],
    )
    .await
    .unwrap_err();
    assert!(err.contains("origin rejected the proxy"), "{err}");
    env.stop().await;
}
