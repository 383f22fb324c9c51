//! Which arguments of which instruction the builder expands, and how.
//!
//! Facts from BuildKit's `frontend/dockerfile/instructions/commands.go`
//! (the commands implementing `SupportsSingleWordExpansion` /
//! `SupportsSingleWordExpansionRaw`) and `dockerfile2llb/convert.go`
//! (the dispatcher, `dispatchArg`, `dispatchExpose`, `toCommand`, the
//! stage loop for FROM).

use crate::Keyword;

/// What part of an instruction an argument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRole<'a> {
    /// The positional arguments: the image of FROM, sources and
    /// destination of COPY/ADD, ports of EXPOSE, paths of VOLUME, the user,
    /// the directory, the signal, the command of RUN/CMD/ENTRYPOINT/SHELL…
    Positional,
    /// The key of an ENV/LABEL pair or the name of an ARG.
    Key,
    /// The value of an ENV/LABEL pair or the default of an ARG.
    Value,
    /// The value of a `--name=value` flag, by name without dashes
    /// (`"chown"`, `"platform"`, `"from"`).
    Flag(&'a str),
    /// One field value of `RUN --mount=k=v,…`, by field name (`"target"`).
    MountField(&'a str),
    /// The body of a heredoc (`<<EOF`) attached to the instruction.
    HeredocBody,
}

/// How the builder treats one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpansionRule {
    /// Taken as written. For RUN/CMD/ENTRYPOINT in shell form the shell in
    /// the container does its own expansion at run time.
    Never,
    /// [`Lex::process_word`](super::Lex::process_word) with the stage
    /// environment (ENV and ARGs in scope), the Dockerfile's escape
    /// character, one string out.
    Word,
    /// [`Lex::process_words`](super::Lex::process_words) with the stage
    /// environment: one argument may become several (EXPOSE).
    Words,
    /// [`Lex::process_word`](super::Lex::process_word) with only the global
    /// ARGs (those before the first FROM) and build args: FROM's image and
    /// `--platform`.
    WordGlobalArgs,
    /// [`Lex::for_heredoc`](super::Lex::for_heredoc) with the stage
    /// environment, but only when the delimiter is unquoted (`<<EOF`, not
    /// `<<"EOF"` or `<<'EOF'`).
    HeredocIfUnquoted,
    /// Must not contain an expansion at all: BuildKit rejects it if
    /// expanding with an empty environment would change it
    /// (`COPY --from=$X`, `RUN --mount=from=$X`): "variable expansion is not
    /// supported for --from".
    Rejected,
}

/// The rule for argument `role` of instruction `keyword`.
///
/// | instruction | expanded | not expanded |
/// |---|---|---|
/// | FROM | image, `--platform` (global ARGs only) | `AS name` |
/// | ARG | default value (stage env; global ARGs for ARGs before FROM), only when no build arg overrides it | name |
/// | ENV, LABEL | keys and values | |
/// | COPY | sources, destination, `--chown`, `--chmod`, heredoc body if unquoted | `--from` (rejected), `--link`, `--parents`, `--exclude` |
/// | ADD | sources, destination, `--chown`, `--chmod`, `--checksum`, heredoc body if unquoted | `--link`, `--keep-git-dir`, `--unpack`, `--exclude` |
/// | RUN | `--mount` field values (`from` rejected) | the command, heredoc bodies, `--network`, `--security` |
/// | EXPOSE | each port, split into words | |
/// | VOLUME | each path (one word each) | |
/// | USER, WORKDIR, STOPSIGNAL | the argument | |
/// | CMD, ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER | | everything |
/// | ONBUILD | | everything at definition; the trigger follows its own row when a child build runs it |
pub fn expansion_rule(keyword: Keyword, role: ArgRole<'_>) -> ExpansionRule {
    use ArgRole as R;
    use ExpansionRule as E;
    use Keyword as K;
    match (keyword, role) {
        // Stage base: expanded with global ARGs only; the stage name is not.
        (K::From, R::Positional | R::Flag("platform")) => E::WordGlobalArgs,
        // dispatch() skips Expand for ARG; dispatchArg/buildMetaArgs expand
        // only the default value, and only when no build arg is given.
        (K::Arg, R::Value) => E::Word,
        // expandKvpsInPlace: both sides of every pair.
        (K::Env | K::Label, R::Key | R::Value) => E::Word,
        // SourcesAndDest.Expand plus the flags each Expand lists.
        (K::Copy | K::Add, R::Positional | R::Flag("chown" | "chmod")) => E::Word,
        (K::Add, R::Flag("checksum")) => E::Word,
        // toCommand: --from must be a literal stage name or index.
        (K::Copy, R::Flag("from")) => E::Rejected,
        // SourcesAndDest.ExpandRaw: heredoc sources with Expand set.
        (K::Copy | K::Add, R::HeredocBody) => E::HeredocIfUnquoted,
        // setMountState: every key=value field of --mount, except that
        // parseMount refuses a `$` in `from` before expansion.
        (K::Run, R::MountField("from")) => E::Rejected,
        (K::Run, R::MountField(_)) => E::Word,
        // dispatchExpose: ProcessWords on each port.
        (K::Expose, R::Positional) => E::Words,
        // Single-word Expand on every item.
        (K::Volume | K::User | K::Workdir | K::Stopsignal, R::Positional) => E::Word,
        _ => E::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_form_commands_are_left_to_the_shell() {
        for kw in [
            Keyword::Run,
            Keyword::Cmd,
            Keyword::Entrypoint,
            Keyword::Shell,
            Keyword::Healthcheck,
            Keyword::Maintainer,
            Keyword::Onbuild,
        ] {
            assert_eq!(
                expansion_rule(kw, ArgRole::Positional),
                ExpansionRule::Never,
                "{kw}"
            );
        }
        assert_eq!(
            expansion_rule(Keyword::Run, ArgRole::HeredocBody),
            ExpansionRule::Never
        );
    }

    #[test]
    fn copy_and_add_expand_paths_and_ownership_but_not_from() {
        for kw in [Keyword::Copy, Keyword::Add] {
            assert_eq!(expansion_rule(kw, ArgRole::Positional), ExpansionRule::Word);
            assert_eq!(
                expansion_rule(kw, ArgRole::Flag("chown")),
                ExpansionRule::Word
            );
            assert_eq!(
                expansion_rule(kw, ArgRole::Flag("chmod")),
                ExpansionRule::Word
            );
            assert_eq!(
                expansion_rule(kw, ArgRole::HeredocBody),
                ExpansionRule::HeredocIfUnquoted
            );
            assert_eq!(
                expansion_rule(kw, ArgRole::Flag("link")),
                ExpansionRule::Never
            );
        }
        assert_eq!(
            expansion_rule(Keyword::Copy, ArgRole::Flag("from")),
            ExpansionRule::Rejected
        );
        assert_eq!(
            expansion_rule(Keyword::Add, ArgRole::Flag("checksum")),
            ExpansionRule::Word
        );
        assert_eq!(
            expansion_rule(Keyword::Copy, ArgRole::Flag("checksum")),
            ExpansionRule::Never
        );
    }

    #[test]
    fn from_uses_global_args_and_expose_splits() {
        assert_eq!(
            expansion_rule(Keyword::From, ArgRole::Positional),
            ExpansionRule::WordGlobalArgs
        );
        assert_eq!(
            expansion_rule(Keyword::From, ArgRole::Flag("platform")),
            ExpansionRule::WordGlobalArgs
        );
        assert_eq!(
            expansion_rule(Keyword::Expose, ArgRole::Positional),
            ExpansionRule::Words
        );
    }

    #[test]
    fn key_value_instructions() {
        for kw in [Keyword::Env, Keyword::Label] {
            assert_eq!(expansion_rule(kw, ArgRole::Key), ExpansionRule::Word);
            assert_eq!(expansion_rule(kw, ArgRole::Value), ExpansionRule::Word);
        }
        assert_eq!(
            expansion_rule(Keyword::Arg, ArgRole::Key),
            ExpansionRule::Never
        );
        assert_eq!(
            expansion_rule(Keyword::Arg, ArgRole::Value),
            ExpansionRule::Word
        );
        assert_eq!(
            expansion_rule(Keyword::Run, ArgRole::MountField("target")),
            ExpansionRule::Word
        );
        assert_eq!(
            expansion_rule(Keyword::Run, ArgRole::MountField("from")),
            ExpansionRule::Rejected
        );
    }
}
