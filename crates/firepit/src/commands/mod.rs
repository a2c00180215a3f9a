//! One file per subcommand.

pub mod cp;
pub mod exec;
pub mod image;
pub mod lifecycle;
pub mod shell;
pub mod up;
