//! BuildKit-compatible shell-word expansion (`$v`, `${v:-w}`, quoting,
//! word splitting) and the table of which instructions expand which
//! arguments. Used by the solver when it plans a build.
