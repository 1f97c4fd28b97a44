//! PostgreSQL for the tests and benches: a fresh database on the local server.

/// A fresh PostgreSQL database `name` on the local server (`YUJING_TEST_PG`, default the
/// `test` database at 127.0.0.1:5432), dropped first if a run before left it; its url.
pub async fn fresh_database(name: &str) -> String {
    use sqlx::{Connection, Executor};
    if std::env::var("YUJING_TEST_PG").is_err() {
        super::peers::ensure();
    }
    let admin = std::env::var("YUJING_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&admin)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (or YUJING_TEST_PG)");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        c.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
            .await
            .expect("create the test database");
    }
    let mut url = url::Url::parse(&admin).expect("url");
    url.set_path(name);
    url.to_string()
}
