//! Aligned text tables and the human forms of capsules and templates.

use crate::types::{Capsule, Template};

/// Renders `headers` and `rows` as left-aligned columns separated by two spaces, one line per
/// row, each line ending in `\n`, without trailing blanks.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(cur) => *cur = (*cur).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `2026-11-01T10:00:00.123Z` as `2026-11-01 10:00:00Z` (seconds precision, zone kept).
pub fn short_time(ts: &str) -> String {
    if ts.len() >= 19 && ts.is_char_boundary(19) && ts.as_bytes().get(10) == Some(&b'T') {
        let zone = if ts.ends_with('Z') {
            "Z".to_string()
        } else {
            // Offsets look like +01:00 at the end.
            let tail = &ts[19..];
            match tail.rfind(['+', '-']) {
                Some(i) => tail[i..].to_string(),
                None => String::new(),
            }
        };
        format!("{} {}{}", &ts[..10], &ts[11..19], zone)
    } else {
        ts.to_string()
    }
}

/// MiB as `512 MiB` or `2 GiB` (whole GiB only).
pub fn mib(m: u64) -> String {
    if m >= 1024 && m.is_multiple_of(1024) {
        format!("{} GiB", m / 1024)
    } else {
        format!("{m} MiB")
    }
}

/// Bytes with a binary unit and one decimal: `0 B`, `1.5 KiB`, `20.0 MiB`.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// The capsule table: ID, STATUS, TEMPLATE, VCPUS, MEMORY, CREATED.
pub fn capsules(list: &[Capsule]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.status.clone(),
                c.template.clone(),
                c.vcpus.to_string(),
                mib(c.memory_mb),
                short_time(&c.created_at),
            ]
        })
        .collect();
    render(
        &["ID", "STATUS", "TEMPLATE", "VCPUS", "MEMORY", "CREATED"],
        &rows,
    )
}

/// One capsule as `field: value` lines.
pub fn capsule_detail(c: &Capsule) -> String {
    let timeout = if c.timeout_sec == 0 {
        "none".to_string()
    } else {
        format!("{} s", c.timeout_sec)
    };
    let rows = vec![
        vec!["ID:".to_string(), c.id.clone()],
        vec!["Status:".to_string(), c.status.clone()],
        vec!["Template:".to_string(), c.template.clone()],
        vec!["vCPUs:".to_string(), c.vcpus.to_string()],
        vec!["Memory:".to_string(), mib(c.memory_mb)],
        vec!["Idle timeout:".to_string(), timeout],
        vec!["Created:".to_string(), short_time(&c.created_at)],
        vec![
            "Started:".to_string(),
            c.started_at
                .as_deref()
                .map(short_time)
                .unwrap_or_else(|| "-".into()),
        ],
        vec![
            "Last active:".to_string(),
            c.last_active_at
                .as_deref()
                .map(short_time)
                .unwrap_or_else(|| "-".into()),
        ],
    ];
    // No header line for the detail view.
    let text = render(&["", ""], &rows);
    text.lines().skip(1).map(|l| format!("{l}\n")).collect()
}

/// The template table: NAME, TYPE, VCPUS, MEMORY, SIZE, CREATED.
pub fn templates(list: &[Template]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.kind.clone(),
                t.vcpus.to_string(),
                mib(t.memory_mb),
                bytes(t.size_bytes),
                short_time(&t.created_at),
            ]
        })
        .collect();
    render(
        &["NAME", "TYPE", "VCPUS", "MEMORY", "SIZE", "CREATED"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capsule(id: &str, status: &str, mem: u64) -> Capsule {
        Capsule {
            id: id.into(),
            status: status.into(),
            template: "minimal".into(),
            vcpus: 1,
            memory_mb: mem,
            created_at: "2026-11-01T10:00:00.123Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let out = capsules(&[
            capsule("cl-aaaaaaaaaaaaaaaaaaaaaaaaa", "running", 512),
            capsule("cl-b", "paused", 2048),
        ]);
        let expected = "\
ID                            STATUS   TEMPLATE  VCPUS  MEMORY   CREATED
cl-aaaaaaaaaaaaaaaaaaaaaaaaa  running  minimal   1      512 MiB  2026-11-01 10:00:00Z
cl-b                          paused   minimal   1      2 GiB    2026-11-01 10:00:00Z
";
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_list_prints_only_headers() {
        assert_eq!(
            capsules(&[]),
            "ID  STATUS  TEMPLATE  VCPUS  MEMORY  CREATED\n"
        );
    }

    #[test]
    fn wide_characters_count_once() {
        let out = render(&["A", "B"], &[vec!["é".into(), "x".into()]]);
        assert_eq!(out, "A  B\né  x\n");
    }

    #[test]
    fn times_are_shortened_keeping_the_zone() {
        assert_eq!(short_time("2026-11-01T10:00:00Z"), "2026-11-01 10:00:00Z");
        assert_eq!(
            short_time("2026-11-01T10:00:00.5+02:00"),
            "2026-11-01 10:00:00+02:00"
        );
        assert_eq!(short_time("garbage"), "garbage");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 * 1024 * 1024), "20.0 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(1536), "1536 MiB");
        assert_eq!(mib(1024), "1 GiB");
    }

    #[test]
    fn detail_lists_fields_without_header() {
        let out = capsule_detail(&capsule("cl-x", "running", 512));
        assert!(
            out.starts_with("ID:            cl-x\nStatus:        running\n"),
            "{out}"
        );
        assert!(out.contains("Idle timeout:  none\n"));
        assert!(out.contains("Started:       -\n"));
    }

    #[test]
    fn template_table() {
        let t = Template {
            name: "my-snap".into(),
            kind: "snapshot".into(),
            vcpus: 2,
            memory_mb: 512,
            size_bytes: 1024 * 1024,
            created_at: "2026-11-01T10:00:00Z".into(),
            ..Default::default()
        };
        assert_eq!(
            templates(&[t]),
            "NAME     TYPE      VCPUS  MEMORY   SIZE     CREATED\n\
             my-snap  snapshot  2      512 MiB  1.0 MiB  2026-11-01 10:00:00Z\n"
        );
    }
}
