//! The compose subcommands: `compose-file` prints the rendered compose file on the
//! host; `compose-setup` and `compose-keys` run inside the one-shot containers.

use std::path::PathBuf;

use crate::compose::{create_keys, setup as compose_setup, ComposeLayout};

/// Flags of `compose-setup`.
#[derive(Debug, clap::Args)]
pub struct ComposeSetupArgs {
    /// The state directory as mounted in the container.
    #[arg(long)]
    pub dir: PathBuf,
}

/// Flags of `compose-keys`.
#[derive(Debug, clap::Args)]
pub struct ComposeKeysArgs {
    /// The state directory as mounted in the container.
    #[arg(long)]
    pub dir: PathBuf,
    /// The ceremony command line.
    #[arg(last = true, required = true)]
    pub ceremony: Vec<String>,
}

/// `compose-file`: prints `docker-compose.yml` as the layout renders it.
pub fn file() -> anyhow::Result<()> {
    print!(
        "{}",
        ComposeLayout::default_five_regions().render_compose_file()
    );
    Ok(())
}

/// `compose-setup`.
pub fn setup(args: ComposeSetupArgs) -> anyhow::Result<()> {
    compose_setup(&ComposeLayout::default_five_regions(), &args.dir)
}

/// `compose-keys`.
pub async fn keys(args: ComposeKeysArgs) -> anyhow::Result<()> {
    create_keys(
        &ComposeLayout::default_five_regions(),
        &args.dir,
        &args.ceremony,
    )
    .await
}
