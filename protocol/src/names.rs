//! Validation of the short names that appear in payloads (meters, loads,
//! OpenADR object ids and targets).

/// Checks that `value` has 1 to `max` characters, each ASCII alphanumeric or
/// one of `punct`. The error names `what` and the first offending character.
pub(crate) fn check_name(
    what: &str,
    value: &str,
    max: usize,
    punct: &[char],
) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if let Some((pos, ch)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || punct.contains(c)))
    {
        let allowed: String = punct.iter().collect();
        return Err(format!(
            "{what} {:?} has {ch:?} at position {pos}; allowed are A-Z a-z 0-9 and {allowed:?}",
            value.chars().take(64).collect::<String>()
        ));
    }
    if value.len() > max {
        return Err(format!(
            "{what} is {} characters long; at most {max} are allowed",
            value.len()
        ));
    }
    Ok(())
}

/// Checks free text (event names, reasons): at most `max` bytes, no control
/// characters other than tab and newline.
pub(crate) fn check_text(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!(
            "{what} is {} bytes long; at most {max} are allowed",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n'))
    {
        return Err(format!("{what} contains the control character {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("meter name", "main-1", 64, &['-']).is_ok());
        let e = check_name("meter name", "ma in", 64, &['-']).unwrap_err();
        assert!(e.contains("' ' at position 2"), "{e}");
        assert!(check_name("x", "", 4, &[]).unwrap_err().contains("empty"));
        assert!(
            check_name("x", "abcde", 4, &[])
                .unwrap_err()
                .contains("at most 4")
        );
    }

    #[test]
    fn text() {
        assert!(check_text("reason", "modbus timeout\non load 3", 100).is_ok());
        assert!(check_text("reason", "a\u{0}b", 100).is_err());
        assert!(check_text("reason", "abc", 2).is_err());
    }
}
