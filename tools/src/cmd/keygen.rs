//! `tools keygen`: a new ed25519 key pair for signing bundles.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Base name of the key pair: writes NAME.key (secret, mode 0600: keep it off the
    /// boards) and NAME.pub (public: copy it to the boards and pass it to --trust).
    /// Refuses to overwrite either file.
    #[arg(long, value_name = "NAME")]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let (secret, public, id) = bundle::signature::write_key_pair(&a.out)
        .with_context(|| format!("keygen {}", a.out.display()))?;
    println!("key id {id}");
    println!(
        "  secret {}  (mode 0600; sign with: tools export --sign {0})",
        secret.display()
    );
    println!(
        "  public {}  (on the board: device ... --trust {0})",
        public.display()
    );
    Ok(())
}
