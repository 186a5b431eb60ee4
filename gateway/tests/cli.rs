//! The `img3d-gateway` binary: refuses plainly while the Redis backend is missing.

use std::process::Command;

/// With Redis unreachable the gateway exits 1 at start-up, saying so, rather than accept
/// clients it cannot serve.
#[test]
fn gateway_without_redis_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_img3d-gateway"))
        .args(["--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to the Redis queue"), "{err}");
}

/// `--help` documents every limit with its environment variable.
#[test]
fn help_lists_every_limit() {
    let out = Command::new(env!("CARGO_BIN_EXE_img3d-gateway")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "IMG3D_IDLE_TIMEOUT",
        "IMG3D_JOB_TIMEOUT",
        "IMG3D_PING_INTERVAL",
        "IMG3D_MAX_IMAGE_SIZE",
        "IMG3D_MAX_FRAME_SIZE",
        "IMG3D_MAX_PIXELS",
        "IMG3D_MAX_CONNECTIONS",
        "IMG3D_MAX_QUEUE",
        "IMG3D_DRAIN_DEADLINE",
        "IMG3D_REDIS",
        "IMG3D_PREFIX",
        "IMG3D_HEARTBEAT_TTL",
        "IMG3D_CLIENT_TTL",
        "IMG3D_MAX_ATTEMPTS",
        "IMG3D_REAP_INTERVAL",
        "IMG3D_RESULT_TTL",
        "IMG3D_SEND_TIMEOUT",
        "IMG3D_MIN_SEND_RATE",
        "IMG3D_MEMORY_BUDGET",
        "IMG3D_API_KEYS",
        "IMG3D_MAX_CONNECTIONS_PER_CLIENT",
        "IMG3D_MAX_QUEUED_PER_CLIENT",
        "IMG3D_TRUSTED_PROXIES",
        "IMG3D_ALLOWED_ORIGINS",
    ] {
        assert!(help.contains(env), "missing {env}");
    }
}

/// Zero durations, sizes and counts are refused at start with a message naming the flag, before
/// anything runs (a zero ping interval or reap interval used to panic a background task).
#[test]
fn nonsense_values_are_refused_naming_the_flag() {
    for (flag, value) in [
        ("--ping-interval", "0s"),
        ("--reap-interval", "0s"),
        ("--send-timeout", "0ms"),
        ("--drain-deadline", "-5s"),
        ("--memory-budget", "0MB"),
        ("--max-connections", "0"),
        ("--max-queued-per-client", "0"),
        ("--trusted-proxies", "10.0.0.0/40"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_img3d-gateway"))
            .args(["--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:1", &format!("{flag}={value}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
}
