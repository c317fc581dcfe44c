//! Reading Markdown: fences, code spans, links, headings and their anchors, sections, table cells.

use std::collections::BTreeSet;

/// A link found in a document.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) line: usize,
    pub(crate) target: String,
}

/// The lines outside fenced code blocks, numbered from 1.
pub(crate) fn outside_fences(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<(char, usize)> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        match (fence, marker) {
            (Some((open, len)), Some(m))
                if m == open && run >= len && trimmed[run..].trim().is_empty() =>
            {
                fence = None;
            }
            (Some(_), _) => {}
            (None, Some(m)) if run >= 3 => fence = Some((m, run)),
            (None, _) => lines.push((i + 1, line)),
        }
    }
    lines
}

/// `line` with every inline code span (`` `...` ``, ``` ``...`` ```) removed.
pub(crate) fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                // An unmatched run of backticks is literal text.
                out.push_str(&rest[start..start + ticks]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Inline links and images (`[text](target "title")`), reference definitions
/// (`[label]: target`) and HTML `href`/`src` attributes.
pub(crate) fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    for (line, raw) in outside_fences(text) {
        let prose = without_code_spans(raw);
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            // The destination ends at the `)` that balances the `(`.
            let mut depth = 0usize;
            let end = after
                .char_indices()
                .find(|&(_, c)| match c {
                    '(' => {
                        depth += 1;
                        false
                    }
                    ')' if depth == 0 => true,
                    ')' => {
                        depth -= 1;
                        false
                    }
                    _ => false,
                })
                .map_or(after.len(), |(i, _)| i);
            let inside = after[..end].trim();
            let target = match inside.strip_prefix('<') {
                Some(angled) => angled.split('>').next().unwrap_or_default(),
                None => inside.split_whitespace().next().unwrap_or_default(),
            };
            found.push(Link {
                line,
                target: target.to_owned(),
            });
            rest = &after[end..];
        }
        let trimmed = prose.trim_start();
        if prose.len() - trimmed.len() <= 3 && trimmed.starts_with('[') {
            if let Some((label, target)) = trimmed[1..].split_once("]:") {
                if !label.is_empty() && !label.contains(']') {
                    let target = target.split_whitespace().next().unwrap_or_default();
                    let target = target.trim_start_matches('<').trim_end_matches('>');
                    found.push(Link {
                        line,
                        target: target.to_owned(),
                    });
                }
            }
        }
        for attribute in ["href=\"", "src=\""] {
            let mut rest = prose.as_str();
            while let Some(at) = rest.find(attribute) {
                let after = &rest[at + attribute.len()..];
                let end = after.find('"').unwrap_or(after.len());
                found.push(Link {
                    line,
                    target: after[..end].to_owned(),
                });
                rest = &after[end..];
            }
        }
    }
    found
}

/// Whether `target` leaves the repository's files: a URL (`https:`, `mailto:`, ...) or a
/// protocol-relative `//host/...`.
pub(crate) fn is_external(target: &str) -> bool {
    if target.starts_with("//") {
        return true;
    }
    let scheme: String = target
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .collect();
    !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && target[scheme.len()..].starts_with(':')
}

/// GitHub's anchor for a heading's text: the rendered text (link destinations and
/// emphasis dropped), lowercased, every character other than a letter, digit, space, `-`
/// or `_` removed, each space turned into `-`.
pub(crate) fn slug(heading: &str) -> String {
    let mut rendered = String::new();
    let mut rest = heading;
    // `[text](url)` renders as `text`.
    while let Some(at) = rest.find("](") {
        rendered.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        rest = after.find(')').map_or("", |end| &after[end + 1..]);
    }
    rendered.push_str(rest);
    rendered
        .trim()
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The ATX headings of a Markdown document, in order: (line index from 0, level, anchor).
/// A repeated slug gets `-1`, `-2`, ... as on GitHub.
pub(crate) fn headings(text: &str) -> Vec<(usize, usize, String)> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for (number, line) in outside_fences(text) {
        let trimmed = line.trim_start();
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        let heading = &trimmed[level..];
        if line.len() - trimmed.len() <= 3
            && (1..=6).contains(&level)
            && (heading.is_empty() || heading.starts_with([' ', '\t']))
        {
            // An optional closing sequence of `#`s is not part of the text.
            let text = heading.trim();
            let text = match text.trim_end_matches('#') {
                stripped if stripped.is_empty() || stripped.ends_with([' ', '\t']) => {
                    stripped.trim_end()
                }
                _ => text,
            };
            let base = slug(text);
            let mut candidate = base.clone();
            let mut n = 0;
            while seen.contains(&candidate) {
                n += 1;
                candidate = format!("{base}-{n}");
            }
            seen.insert(candidate.clone());
            found.push((number - 1, level, candidate));
        }
    }
    found
}

/// The anchors of a Markdown document: its ATX headings' slugs (see [`headings`]) and
/// explicit `id="..."`/`name="..."` HTML anchors.
pub(crate) fn anchors(text: &str) -> BTreeSet<String> {
    let mut found: BTreeSet<String> = headings(text).into_iter().map(|(_, _, a)| a).collect();
    for (_, line) in outside_fences(text) {
        for attribute in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(attribute) {
                let after = &rest[at + attribute.len()..];
                let end = after.find('"').unwrap_or(after.len());
                found.insert(after[..end].to_owned());
                rest = &after[end..];
            }
        }
    }
    found
}

/// The text of the section with `anchor`: from its heading to the next heading of the same
/// or a higher level. `None` when no heading has that anchor.
pub(crate) fn section<'a>(text: &'a str, anchor: &str) -> Option<String> {
    let all = headings(text);
    let at = all.iter().position(|(_, _, a)| a == anchor)?;
    let (start, level, _) = all[at];
    let end = all[at + 1..]
        .iter()
        .find(|(_, l, _)| *l <= level)
        .map_or(usize::MAX, |(line, _, _)| *line);
    Some(
        text.lines()
            .enumerate()
            .filter(|(i, _)| (start..end).contains(i))
            .map(|(_, l)| l)
            .collect::<Vec<&'a str>>()
            .join("\n"),
    )
}

/// The cells of a Markdown table row (`\|` is a `|` inside a cell).
pub(crate) fn cells(row: &str) -> Vec<String> {
    row.replace("\\|", "\u{1}")
        .split('|')
        .map(|c| c.trim().replace('\u{1}', "|"))
        .collect()
}

/// The backticked words of a table cell.
pub(crate) fn code_words(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}
