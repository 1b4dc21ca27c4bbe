//! The man page, rendered from the clap definitions (`clap_mangen`: synopsis, options grouped
//! as `--help` groups them, each with its `ONEPOLL_*` variable and default) plus the sections
//! an operator looks for that clap knows nothing of.

use clap::CommandFactory;
use roff::{Roff, bold, italic, roman};

/// `onepoll.1` in roff.
pub fn man_page() -> Vec<u8> {
    let command = onepoll::config::Config::command();
    let man = clap_mangen::Man::new(command.clone()).section("1").manual("User Commands");
    let mut page = Vec::new();
    man.render_title(&mut page).unwrap();
    man.render_name_section(&mut page).unwrap();
    man.render_synopsis_section(&mut page).unwrap();
    man.render_description_section(&mut page).unwrap();
    let mut more = Roff::new();
    more.control("PP", []).text([
        roman("It serves the directory "),
        italic("ROOT"),
        roman(" (default "),
        bold("www"),
        roman(") over HTTP/1.1 and HTTPS from one event loop on one thread, or from one of the "),
        roman("comparison engines that --engine names."),
    ]);
    more.to_writer(&mut page).unwrap();
    man.render_options_section(&mut page).unwrap();
    extra_sections(&command).to_writer(&mut page).unwrap();
    man.render_version_section(&mut page).unwrap();
    page
}

/// A section of terms, each with its meaning.
fn definitions(roff: &mut Roff, section: &str, items: &[(&str, &str)]) {
    roff.control("SH", [section]);
    terms(roff, items);
}

/// Terms in bold, each with its meaning (`.TP` paragraphs).
fn terms(roff: &mut Roff, items: &[(&str, &str)]) {
    for (term, meaning) in items {
        roff.control("TP", []).text([bold(*term)]);
        roff.text([roman(*meaning)]);
    }
}

/// `/etc/default/onepoll` for the packaged service: every `ONEPOLL_*` variable with its help
/// and default, commented out, except the root, which the package points at its own.
pub fn default_file() -> String {
    let mut text = String::from(
        "# Settings for onepoll.service, which reads this file (EnvironmentFile). Every onepoll\n\
         # option has a variable; uncomment a line to change it, then `systemctl restart onepoll`.\n\
         # Under socket activation (onepoll.socket, port 80) the listening addresses come from\n\
         # the socket unit, and ONEPOLL_ADDR, ONEPOLL_PORT and ONEPOLL_LISTEN are ignored. See onepoll(1).\n",
    );
    for arg in onepoll::config::Config::command().get_arguments() {
        let Some(variable) = arg.get_env().map(|env| env.to_string_lossy().into_owned()) else { continue };
        let help = arg.get_help().map(|help| help.to_string()).unwrap_or_default();
        let default = arg.get_default_values().first().map(|value| value.to_string_lossy().into_owned());
        let is_flag = !arg.get_action().takes_values();
        let value = match (default, is_flag) {
            (Some(default), _) => default,
            (None, true) => "false".to_owned(),
            (None, false) => String::new(),
        };
        text.push('\n');
        let mut line = String::from("#");
        for word in help.split_whitespace() {
            if line.len() + word.len() > 90 {
                text.push_str(&line);
                text.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        text.push_str(&line);
        text.push('\n');
        match variable.as_str() {
            "ONEPOLL_ROOT" => text.push_str("ONEPOLL_ROOT=/var/www/onepoll\n"),
            _ => text.push_str(&format!("#{variable}={value}\n")),
        }
    }
    text
}

fn extra_sections(command: &clap::Command) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman("Every option can come from the variable named beside it; the command line wins.")]);
    let variables = command.get_arguments().filter_map(|arg| {
        Some((arg.get_env()?.to_string_lossy().into_owned(), arg.get_long().map(str::to_owned)))
    });
    for (variable, long) in variables {
        roff.control("TP", []).text([bold(variable)]);
        roff.text([match long {
            Some(long) => roman(format!("as --{long}")),
            None => roman("as the ROOT argument"),
        }]);
    }
    terms(
        &mut roff,
        &[
            (
                "RUST_LOG",
                "diagnostics on stderr: error, warn, info (default) or debug, which logs every connection's state changes",
            ),
            (
                "LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES",
                "listening sockets passed by systemd (socket activation); names \"https\" get TLS",
            ),
            ("NOTIFY_SOCKET", "set by systemd for Type=notify: onepoll reports READY=1 and STOPPING=1"),
        ],
    );

    definitions(
        &mut roff,
        "SIGNALS",
        &[
            (
                "SIGTERM, SIGINT",
                "graceful stop: listeners close, responses in flight finish for up to --grace-period, exit 0; a second signal exits at once with 1",
            ),
            (
                "SIGHUP",
                "reopens the --access-log file (logrotate), reloads the --tls-cert/--tls-key pairs and the --auth-file",
            ),
        ],
    );

    definitions(
        &mut roff,
        "FILES",
        &[
            (
                "/etc/default/onepoll",
                "settings for the packaged service, as ONEPOLL_* variables (read by onepoll.service)",
            ),
            ("/var/www/onepoll", "the packaged service's default root"),
            (
                "/lib/systemd/system/onepoll.service, onepoll.socket",
                "the systemd units; the socket unit listens on port 80 and starts the service on the first connection",
            ),
        ],
    );

    definitions(
        &mut roff,
        "EXIT STATUS",
        &[
            (
                "0",
                "stopped by SIGTERM or SIGINT after in-flight responses finished (or the grace period ended)",
            ),
            (
                "1",
                "could not start (root, listeners, certificates, password file, privileges), or a second stop signal",
            ),
            ("2", "a usage error: an unknown option or a value clap or onepoll refuses"),
        ],
    );

    definitions(
        &mut roff,
        "EXAMPLES",
        &[
            ("onepoll", "serve ./www on http://127.0.0.1:8080/"),
            ("onepoll /srv/site --listen 0.0.0.0:80 --listen [::]:80", "a public site on both IPv4 and IPv6"),
            (
                "onepoll /srv/site --listen-tls 0.0.0.0:443 --tls-cert fullchain.pem --tls-key privkey.pem --listen 0.0.0.0:80 --https-redirect",
                "HTTPS, with plain HTTP redirected to it except ACME HTTP-01 challenges",
            ),
            (
                "onepoll /srv/site --header-for '/assets/*' 'Cache-Control: public, max-age=31536000, immutable'",
                "long-lived caching for fingerprinted assets",
            ),
            (
                "htpasswd -B -c /etc/onepoll/htpasswd alice && onepoll /srv/site --auth-file /etc/onepoll/htpasswd --auth-path /private",
                "a password on one directory",
            ),
            (
                "RUST_LOG=debug strace -f onepoll --port 0",
                "watch the event loop's syscalls and each connection's states",
            ),
        ],
    );
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("htpasswd(1), systemd.socket(5), sd_notify(3); the README in /usr/share/doc/onepoll.")]);
    roff
}
