//! Flags shared by the commands that talk to a board over a serial port.

use std::time::Duration;

use anyhow::{Context, Result};
use host::link::{DeviceInfo, Link, LinkOptions};

#[derive(clap::Args, Debug, Clone)]
pub struct SerialArgs {
    /// Serial port of the board running `device serve` (e.g. /dev/ttyUSB0, /dev/ttyACM0,
    /// or a /dev/pts/N pseudo-terminal).
    #[arg(long, value_name = "PORT")]
    pub serial: String,
    /// Baud rate (50..=4000000); must match `device serve --baud`.
    #[arg(long, value_name = "N", default_value_t = 115_200)]
    pub baud: u32,
    /// How long to wait for each answer, in milliseconds. An answer lost on the wire
    /// (its CRC failed) shows up as this timeout; it is never accepted damaged.
    #[arg(long, value_name = "MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

impl SerialArgs {
    pub fn options(&self, retries: u32) -> LinkOptions {
        LinkOptions {
            baud: self.baud,
            timeout: Duration::from_millis(self.timeout_ms),
            retries,
        }
    }

    /// Opens the port and does the handshake (Hello + label pages). The handshake
    /// always retries lost frames a few times, whatever `retries` says for the rest.
    pub fn connect(&self, retries: u32) -> Result<(Link, DeviceInfo)> {
        let mut link = Link::open(&self.serial, self.options(retries.max(3)))?;
        let info = link
            .handshake()
            .with_context(|| format!("handshake with the device on {} failed", self.serial))?;
        link.set_retries(retries);
        Ok((link, info))
    }
}
