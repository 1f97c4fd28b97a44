//! Any text as the SQL of `POST /api/v1/query` (and `yujing query`), on the API's limits, over
//! an archive with a few readings: it is answered or refused with a message, never a panic, a
//! stack overflow or an abort (the process is the service).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use yujing::archive::query::{run_isolated, Limits};

fn archive() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("yujing-fuzz-sql-{}", std::process::id()));
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().expect("tz");
        let mut r = yujing::archive::Recorder::open(&dir, tz).expect("archive");
        let t0 = 1_795_793_400_000;
        for i in 0..8 {
            let ts = t0 + i * 1_800_000;
            r.record("s1", "s1-pm", "pm10", 100.0 + i as f64, ts, ts, "mqtt");
            r.record("s2", "s2-pm", "pm10", 50.0, ts, ts, "hj212");
        }
        let f = r.rotate().expect("rotate").expect("file");
        yujing::archive::seal(&dir, &f, tz).expect("seal");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits {
        timeout: std::time::Duration::from_secs(5),
        ..Limits::API
    };
    let r = run_isolated(
        archive().to_path_buf(),
        sql.to_string(),
        100,
        limits,
        tokio_util::sync::CancellationToken::new(),
    );
    if let Err(e) = r {
        assert!(!e.to_string().is_empty());
    }
});
