//! The font PNG text is laid out with: the DejaVu Sans subset in `assets/fonts` (Bitstream Vera
//! licence, beside it), compiled in and registered once with plotters as `sans-serif`.

use std::sync::OnceLock;

use crate::{Error, Result};

/// The font family charts name (SVG viewers draw it with their own sans-serif font).
pub(super) const FAMILY: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

/// Registers the compiled-in font (once per process; plotters keeps it in its font table).
pub(super) fn ensure() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, plotters::style::FontStyle::Normal, DEJAVU_SANS)
            .is_ok()
    });
    match ok {
        true => Ok(()),
        false => Err(Error::Internal(
            "the compiled-in chart font could not be read".into(),
        )),
    }
}
