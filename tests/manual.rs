//! The man page is generated from the same clap definitions as `--help`: every flag `--help`
//! shows is in it, under the same headings, with the sections an operator looks for.

#[path = "../examples/gen_docs/manual.rs"]
mod manual;

#[test]
fn every_flag_of_help_is_in_the_man_page() {
    let page = String::from_utf8(manual::man_page()).unwrap().replace("\\-", "-");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_onepoll")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let flags: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '`' || c == '\'')
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| word.split(['=', '<', '/', '.', ')', ';', ':']).next().unwrap())
        .collect();
    assert!(flags.len() > 30, "{flags:?}");
    // Each in an option's own entry, not only in the synopsis.
    let entries = &page[page.find(".SH OPTIONS").expect("an OPTIONS section")..];
    for flag in flags {
        assert!(entries.contains(flag), "{flag} is in --help but not described in the man page");
    }
    // `--help`'s headings become sections.
    for heading in help.lines().filter(|line| !line.starts_with(' ') && line.ends_with(':')) {
        let heading = heading.trim_end_matches(':').to_uppercase();
        if heading != "USAGE" && heading != "ARGUMENTS" {
            assert!(page.contains(&format!(".SH {heading}")), "no section {heading}");
        }
    }
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "ENVIRONMENT",
        "SIGNALS",
        "FILES",
        "EXIT STATUS",
        "EXAMPLES",
    ] {
        assert!(
            page.contains(&format!(".SH {section}")) || page.contains(&format!(".SH \"{section}\"")),
            "no {section}"
        );
    }
    for variable in ["ONEPOLL_PORT", "ONEPOLL_AUTH_FILE", "RUST_LOG", "LISTEN_FDS"] {
        assert!(page.contains(variable), "{variable}");
    }
}

#[test]
fn the_default_file_names_every_variable_with_its_default() {
    let text = manual::default_file();
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_onepoll")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let variables: Vec<&str> = help
        .split(|c: char| c == '=' || c == ']' || c.is_whitespace())
        .filter(|word| word.starts_with("ONEPOLL_") && word.len() > "ONEPOLL_".len())
        .collect();
    assert!(variables.len() > 30, "{variables:?}");
    for variable in variables {
        let set = text.lines().any(|line| line.trim_start_matches('#').starts_with(&format!("{variable}=")));
        assert!(set, "{variable} is missing from the default file");
    }
    assert!(text.contains("\n#ONEPOLL_PORT=8080\n") && text.contains("\nONEPOLL_ROOT=/var/www/onepoll\n"));
    assert!(text.contains("\n#ONEPOLL_COMPRESS_CACHE=16M\n") && text.contains("\n#ONEPOLL_LISTING=false\n"));
}
