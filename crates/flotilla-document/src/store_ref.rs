//! Parameter Store references inside planned scripts (`{{param:...}}`, `{{ssm:...}}`,
//! `{{ssm-secure:...}}`, as `flotilla_core::parameter` reads them): values the server resolves
//! when it sends a step to a node.
//!
//! Invariant: the injection rule of the `plan` module holds for them too. A reference in
//! script text is never replaced by its value: it becomes a reference to an environment
//! variable `FLOTILLA_STORE_<i>`, spelled for its quoting context by the same scanner, and the
//! value travels in the step's environment. Pure: this module only rewrites text; which
//! parameter a reference names and its value are the server's business. The syntax is read by
//! `flotilla_core::parameter::parse_references` alone, so what is rewritten here is exactly
//! what the server resolves.

use flotilla_core::parameter::parse_references;

use crate::shell::Scanner;

/// Prefix of the variables carrying Parameter Store values into a script. It differs from
/// `FLOTILLA_PARAM_` and `FLOTILLA_ITEM_` right after `FLOTILLA_`, so the families never collide.
pub const STORE_ENV_PREFIX: &str = "FLOTILLA_STORE_";

/// Rewrites every Parameter Store reference in `script` as an environment variable reference.
/// Returns the new script and, per variable, the reference text it stands for (a repeated
/// reference shares one variable). Variables are numbered from `first`, so several steps can
/// share a numbering. A malformed reference or one at a place no expansion can be written is an
/// error.
pub fn externalize_store_references(script: &str, first: usize) -> Result<(String, Vec<(String, String)>), String> {
    let references = parse_references(script).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(script.len());
    let mut scanner = Scanner::default();
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut at = 0;
    for found in references {
        let before = script.get(at..found.start).unwrap_or_default();
        let reference = script.get(found.start..found.end).unwrap_or_default();
        out.push_str(before);
        scanner.feed(before);
        let var = match vars.iter().find(|(_, r)| r == reference) {
            Some((var, _)) => var.clone(),
            None => {
                let var = format!("{STORE_ENV_PREFIX}{}", first + vars.len());
                vars.push((var.clone(), reference.to_owned()));
                var
            }
        };
        let spelled = scanner
            .reference(&var)
            .map_err(|why| format!("`{reference}` cannot be placed in the script safely: {}", why.explain()))?;
        out.push_str(&spelled);
        at = found.end;
    }
    out.push_str(script.get(at..).unwrap_or_default());
    Ok((out, vars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_quoted_variable_expansions() {
        let (script, vars) =
            externalize_store_references("echo {{param:/a}} \"in {{param:/b:2}}\" '{{param:/a}}'\necho done", 0)
                .expect("placed");
        assert_eq!(
            script,
            "echo \"${FLOTILLA_STORE_0}\" \"in ${FLOTILLA_STORE_1}\" ''\"${FLOTILLA_STORE_0}\"''\necho done"
        );
        assert_eq!(
            vars,
            vec![
                ("FLOTILLA_STORE_0".to_string(), "{{param:/a}}".to_string()),
                ("FLOTILLA_STORE_1".to_string(), "{{param:/b:2}}".to_string())
            ]
        );
        assert_eq!(
            externalize_store_references("no refs {{ x }}", 3).expect("none"),
            ("no refs {{ x }}".into(), vec![])
        );
        assert!(externalize_store_references("echo {{param:/a", 0).is_err());
        let (script, vars) =
            externalize_store_references("echo {{ssm:greeting}} {{ ssm-secure:/db/pw:2 }} {{ .State }}", 0)
                .expect("aws");
        assert_eq!(script, "echo \"${FLOTILLA_STORE_0}\" \"${FLOTILLA_STORE_1}\" {{ .State }}");
        assert_eq!(vars[0].1, "{{ssm:greeting}}");
        assert_eq!(vars[1].1, "{{ ssm-secure:/db/pw:2 }}");
        assert!(externalize_store_references("echo {{ssm:bad name}}", 0).is_err());
        assert!(externalize_store_references("cat <<'EOF'\n{{param:/a}}\nEOF", 0).is_err());
    }
}
