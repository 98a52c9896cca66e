//! Aligned text tables and the human forms of capsules and templates.

use crate::types::{Capsule, Metrics, Process, Template};

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

/// The one date format of the CLI's output: UTC to the second, `2026-11-01 10:00:00Z`.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%SZ";

/// An RFC 3339 time (any zone, any precision) in [`TIME_FORMAT`]; text that is not one is
/// returned unchanged.
pub fn short_time(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts.trim()) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format(TIME_FORMAT)
            .to_string(),
        Err(_) => ts.to_string(),
    }
}

/// Unix seconds in [`TIME_FORMAT`].
pub fn unix_time(secs: i64) -> String {
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => t.format(TIME_FORMAT).to_string(),
        None => secs.to_string(),
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

/// The process table: PID, TAG, COMMAND (the program and its arguments, shell-quoted).
pub fn processes(list: &[Process]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let mut words = vec![p.cmd.clone()];
            words.extend(p.args.iter().cloned());
            let command = words
                .iter()
                .map(|w| crate::cli::shell_quote(w))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                p.pid.to_string(),
                p.tag.clone().unwrap_or_else(|| "-".into()),
                command,
            ]
        })
        .collect();
    render(&["PID", "TAG", "COMMAND"], &rows)
}

/// Eight block heights, lowest first.
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One block character per value (the last `width` values), scaled from 0 to `max`.
pub fn sparkline(values: &[f64], max: f64, width: usize) -> String {
    let start = values.len().saturating_sub(width);
    values[start..]
        .iter()
        .map(|v| {
            if max <= 0.0 || !v.is_finite() || *v <= 0.0 {
                BLOCKS[0]
            } else {
                let i = ((v / max) * (BLOCKS.len() - 1) as f64).round() as usize;
                BLOCKS[i.min(BLOCKS.len() - 1)]
            }
        })
        .collect()
}

/// How many samples the metrics charts and table show.
pub const METRICS_WIDTH: usize = 60;

/// The metrics view: a chart line each for CPU and memory (the last [`METRICS_WIDTH`]
/// samples, with the latest and peak values), then the last `rows` samples as a table.
/// CPU is scaled to 100 %, memory to `mem_total` bytes (the capsule's memory) when known,
/// else to its peak.
pub fn metrics(m: &Metrics, rows: usize, mem_total: Option<u64>) -> String {
    if m.points.is_empty() {
        return format!(
            "no samples in the last {} (the server samples running capsules every 10 s)\n",
            m.range
        );
    }
    let shown = &m.points[m.points.len().saturating_sub(METRICS_WIDTH)..];
    let cpu: Vec<f64> = shown.iter().map(|p| p.cpu_pct).collect();
    let mem: Vec<f64> = shown.iter().map(|p| p.mem_bytes as f64).collect();
    let peak = |v: &[f64]| v.iter().cloned().fold(0.0_f64, f64::max);
    let (cpu_peak, mem_peak) = (peak(&cpu), peak(&mem));
    let last = &shown[shown.len() - 1];
    let first = &shown[0];
    let mut out = format!(
        "{} samples, {} .. {}\n",
        shown.len(),
        unix_time(first.timestamp_unix),
        unix_time(last.timestamp_unix)
    );
    out.push_str(&format!(
        "CPU  {}  now {:.1} %, peak {:.1} %\n",
        sparkline(&cpu, 100.0_f64.max(cpu_peak), METRICS_WIDTH),
        last.cpu_pct,
        cpu_peak
    ));
    let (scale, of) = match mem_total {
        Some(t) if t > 0 => (t as f64, format!(" of {}", bytes(t))),
        _ => (mem_peak, String::new()),
    };
    out.push_str(&format!(
        "MEM  {}  now {}{of}, peak {}\n\n",
        sparkline(&mem, scale.max(mem_peak), METRICS_WIDTH),
        bytes(last.mem_bytes),
        bytes(mem_peak as u64)
    ));
    let table_rows: Vec<Vec<String>> = m.points[m.points.len().saturating_sub(rows)..]
        .iter()
        .map(|p| {
            vec![
                unix_time(p.timestamp_unix),
                format!("{:.1} %", p.cpu_pct),
                bytes(p.mem_bytes),
                bytes(p.disk_bytes),
            ]
        })
        .collect();
    out.push_str(&render(&["TIME", "CPU", "MEMORY", "DISK"], &table_rows));
    out
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
    fn times_are_shown_in_utc_to_the_second() {
        assert_eq!(short_time("2026-11-01T10:00:00Z"), "2026-11-01 10:00:00Z");
        assert_eq!(
            short_time("2026-11-29T05:12:08.635Z"),
            "2026-11-29 05:12:08Z"
        );
        assert_eq!(
            short_time("2026-11-01T10:00:00.5+02:00"),
            "2026-11-01 08:00:00Z"
        );
        assert_eq!(short_time("garbage"), "garbage");
        assert_eq!(unix_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(unix_time(1_795_000_000), "2026-11-18 11:06:40Z");
    }

    #[test]
    fn process_table_quotes_arguments() {
        let p = Process {
            pid: 42,
            tag: Some("job".into()),
            cmd: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 100".into()],
        };
        assert_eq!(
            processes(&[p]),
            "PID  TAG  COMMAND\n42   job  /bin/sh -c 'sleep 100'\n"
        );
    }

    #[test]
    fn sparkline_scales_to_the_maximum() {
        assert_eq!(sparkline(&[0.0, 50.0, 100.0], 100.0, 10), "▁▅█");
        assert_eq!(sparkline(&[1.0, 2.0, 3.0], 3.0, 2), "▆█");
        assert_eq!(sparkline(&[5.0], 0.0, 2), "▁");
    }

    #[test]
    fn metrics_view_has_charts_and_the_last_rows() {
        use crate::types::MetricPoint;
        let m = Metrics {
            sandbox_id: "cl-x".into(),
            range: "10m".into(),
            points: (0..5)
                .map(|i| MetricPoint {
                    timestamp_unix: 1_795_000_000 + 10 * i,
                    cpu_pct: 25.0 * i as f64,
                    mem_bytes: (100 + i as u64) * 1024 * 1024,
                    disk_bytes: 1024,
                })
                .collect(),
        };
        let out = metrics(&m, 2, None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "5 samples, 2026-11-18 11:06:40Z .. 2026-11-18 11:07:20Z"
        );
        assert_eq!(lines[1], "CPU  ▁▃▅▆█  now 100.0 %, peak 100.0 %");
        assert!(lines[2].starts_with("MEM  "), "{out}");
        assert!(lines[2].ends_with("now 104.0 MiB, peak 104.0 MiB"), "{out}");
        assert_eq!(lines[4].split_whitespace().next(), Some("TIME"));
        assert_eq!(lines.len(), 7, "two table rows: {out}");
        assert!(lines[6].contains("100.0 %"));
        let empty = Metrics {
            range: "5m".into(),
            ..Default::default()
        };
        assert!(metrics(&empty, 5, None).starts_with("no samples in the last 5m"));
        // Against the capsule's memory, 104 MiB of 512 MiB is a low bar.
        let out = metrics(&m, 2, Some(512 * 1024 * 1024));
        let mem_line = out.lines().nth(2).unwrap();
        assert!(
            mem_line.starts_with("MEM  ▂▂▂▂▂  now 104.0 MiB of 512.0 MiB"),
            "{out}"
        );
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
