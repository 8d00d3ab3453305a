//! The message a command signs or checks: text, a file, or hex.

use std::path::PathBuf;

use super::CliError;

/// Exactly one of the three.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct MessageArgs {
    /// The message as text (its UTF-8 bytes).
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
    /// The message is this file's bytes.
    #[arg(long, value_name = "FILE")]
    pub message_file: Option<PathBuf>,
    /// The message as hex.
    #[arg(long, value_name = "HEX")]
    pub message_hex: Option<String>,
}

impl MessageArgs {
    /// The message's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, CliError> {
        if let Some(text) = &self.message {
            return Ok(text.as_bytes().to_vec());
        }
        if let Some(path) = &self.message_file {
            return std::fs::read(path).map_err(|e| {
                CliError::Usage(format!(
                    "cannot read --message-file {}: {e}",
                    path.display()
                ))
            });
        }
        if let Some(text) = &self.message_hex {
            return hex::decode(text.trim())
                .map_err(|e| CliError::Usage(format!("--message-hex is not hex: {e}")));
        }
        Err(CliError::Usage(
            "give the message: --message, --message-file or --message-hex".into(),
        ))
    }
}
