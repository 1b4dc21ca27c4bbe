//! Writes the man page and shell completions, generated from the clap definitions, into a
//! directory: `cargo run --example gen_docs -- DIR` (scripts/release.sh and the .deb build do).
//! DIR/onepoll.1, DIR/onepoll.default (/etc/default/onepoll in the package),
//! DIR/completions/{onepoll.bash,_onepoll,onepoll.fish}.

mod manual;

use std::fs;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/docs".to_owned()));
    let completions = dir.join("completions");
    fs::create_dir_all(&completions).expect("create the output directory");
    fs::write(dir.join("onepoll.1"), manual::man_page()).expect("write the man page");
    fs::write(dir.join("onepoll.default"), manual::default_file()).expect("write the default file");
    for (shell, file) in
        [(Shell::Bash, "onepoll.bash"), (Shell::Zsh, "_onepoll"), (Shell::Fish, "onepoll.fish")]
    {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut onepoll::config::Config::command(), "onepoll", &mut script);
        fs::write(completions.join(file), script).expect("write a completion script");
    }
    println!("wrote {}/onepoll.1 and completions for bash, zsh and fish", dir.display());
}
