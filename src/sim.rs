pub fn demo(
    _c: std::sync::Arc<crate::config::Config>,
    _w: Option<&std::path::Path>,
    _en: bool,
    _o: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    Ok(())
}
