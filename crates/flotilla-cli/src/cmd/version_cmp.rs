//! `flotilla version-cmp`: compare two package versions with an ecosystem's exact ordering.

use crate::output::outln;
use std::cmp::Ordering;

#[derive(clap::Args)]
pub struct VersionCmpArgs {
    /// deb (dpkg), rpm or apk.
    #[arg(long)]
    ecosystem: String,
    a: String,
    b: String,
}

/// Prints `<`, `=` or `>`.
pub fn run(args: VersionCmpArgs) -> anyhow::Result<()> {
    let eco: flotilla_vuln::Ecosystem = args.ecosystem.parse()?;
    let sign = match flotilla_vuln::compare(eco, &args.a, &args.b)? {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    };
    outln!("{sign}")?;
    Ok(())
}
