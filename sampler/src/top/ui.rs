//! Drawing the model with ratatui, and the terminal itself: raw mode and the alternate screen
//! on the way in, both undone on the way out, whether the view ends by a key, a signal or a
//! panic.

use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crossterm::cursor::{Hide, Show};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row as TableRow, Table};
use ratatui::Frame;

use super::model::{human, sparkline, value_text, App, Key, Sort};
use super::summary::RowKind;

/// The terminal in raw mode on the alternate screen; dropping it gives the terminal back.
#[derive(Debug)]
pub struct Screen(());

impl Screen {
    /// Enters raw mode and the alternate screen, and installs a panic hook that restores the
    /// terminal before the panic message is printed (so the message is readable).
    pub fn enter() -> io::Result<Screen> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let screen = Screen(());
        crossterm::execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// The terminal's standard error while [`capture_stderr`] holds it, or -1.
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// From now until [`restore`], what anything in the process writes to standard error (a
/// sampler's or adapter's notice) is given to `line`, one call per line, instead of being
/// written over the view.
pub fn capture_stderr(line: impl Fn(String) + Send + 'static) -> io::Result<()> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe(2) to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dup(2) and dup2(2) on descriptors this process owns (2, and the pipe's write end
    // just made); the write end is closed once it is descriptor 2 as well.
    let saved = unsafe {
        let saved = libc::dup(2);
        if saved < 0 || libc::dup2(fds[1], 2) < 0 {
            let e = io::Error::last_os_error();
            libc::close(fds[0]);
            libc::close(fds[1]);
            if saved >= 0 {
                libc::close(saved);
            }
            return Err(e);
        }
        libc::close(fds[1]);
        saved
    };
    SAVED_STDERR.store(saved, Ordering::SeqCst);
    // SAFETY: the read end is ours alone, and the `File` now owns it.
    let reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    std::thread::Builder::new()
        .name("sampler-top-stderr".into())
        .spawn(move || {
            // Ends when descriptor 2 is given back (the pipe's last writer is gone).
            for l in io::BufReader::new(reader).lines() {
                match l {
                    Ok(l) => line(l.trim_start_matches("sampler: ").to_owned()),
                    Err(_) => break,
                }
            }
        })?;
    Ok(())
}

/// Gives standard error back to the terminal, if it was captured.
fn restore_stderr() {
    let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        // SAFETY: `saved` is the descriptor `capture_stderr` duplicated and nothing else
        // closes; dup2 onto 2 and closing it touch no memory.
        unsafe {
            libc::dup2(saved, 2);
            libc::close(saved);
        }
    }
}

/// Whether the terminal is in raw mode on the alternate screen, by [`Screen::enter`].
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leaves the alternate screen, shows the cursor, ends raw mode and gives standard error back;
/// only the first call after [`Screen::enter`] does it. (Leaving the alternate screen twice
/// is not harmless: the second `CSI ? 1049 l` puts the cursor back where it was when the view
/// started, and what is printed next, such as a panic's message, lands over older lines.)
pub fn restore() {
    restore_stderr();
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    let _ = crossterm::execute!(out, LeaveAlternateScreen, Show);
    let _ = out.flush();
    let _ = disable_raw_mode();
}

/// The model's key of a terminal key event, if it has one.
pub fn key_of(k: KeyEvent) -> Option<Key> {
    Some(match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        _ => return None,
    })
}

/// Draws the whole view.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    let procs = app.processes();
    let proc_height = if procs.is_empty() {
        0
    } else {
        (procs.len() as u16 + 3).min(10)
    };
    let [head, procs_area, table_area, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(proc_height),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());

    let mut status = vec![
        Span::styled("sampler top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" · {} · harvest {}", app.source, app.frames)),
        Span::raw(format!(" · sort {}", app.sort.as_str())),
    ];
    if !app.filter.is_empty() {
        status.push(Span::raw(format!(" · filter {:?}", app.filter)));
    }
    if app.paused {
        status.push(Span::styled(
            " · PAUSED",
            Style::new().add_modifier(Modifier::REVERSED),
        ));
    }
    if let Some(e) = &app.error {
        status.push(Span::styled(
            format!(" · {e}"),
            Style::new().add_modifier(Modifier::BOLD),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(status)), head);

    if !procs.is_empty() {
        let rows = procs.iter().map(|p| {
            TableRow::new(vec![
                Cell::from(p.pid.clone()),
                Cell::from(p.name.clone()),
                Cell::from(human(p.rss, "By")),
                Cell::from(p.cpu.map_or("-".into(), |c| format!("{:.1}%", c * 100.0))),
            ])
        });
        let t = Table::new(
            rows,
            [
                Constraint::Length(9),
                Constraint::Length(24),
                Constraint::Length(12),
                Constraint::Length(8),
            ],
        )
        .header(
            TableRow::new(vec!["PID", "NAME", "RSS", "CPU"])
                .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(" processes "));
        f.render_widget(t, procs_area);
    }

    let visible = app.visible();
    let spark_width = 30usize;
    let height = table_area.height.saturating_sub(3) as usize;
    let offset = app.offset.min(visible.len().saturating_sub(height.max(1)));
    let rows = visible.iter().skip(offset).map(|r| {
        let (p50, p99) = match r.kind {
            RowKind::Timing => {
                let unit = super::model::unit_of(r);
                (human(r.p50, unit), human(r.p99, unit))
            }
            _ => (String::new(), String::new()),
        };
        TableRow::new(vec![
            Cell::from(r.key.clone()),
            Cell::from(r.kind.as_str()),
            Cell::from(value_text(r)),
            Cell::from(p50),
            Cell::from(p99),
            Cell::from(sparkline(&r.history, spark_width)),
        ])
    });
    let mark = |s: Sort, title: &'static str| -> String {
        if app.sort == s {
            format!("{title}▼")
        } else {
            title.to_owned()
        }
    };
    let header = TableRow::new(vec![
        mark(Sort::Name, "SERIES"),
        "KIND".to_owned(),
        mark(Sort::Value, "VALUE"),
        "P50".to_owned(),
        mark(Sort::P99, "P99"),
        "TREND".to_owned(),
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let t = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(7),
            Constraint::Length(14),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(spark_width as u16),
        ],
    )
    .header(header)
    .block(Block::bordered().title(format!(
        " series {} of {} ",
        visible.len(),
        app.rows.len()
    )));
    f.render_widget(t, table_area);

    let help = match &app.editing {
        Some(text) => format!("filter: {text}▏ (Enter to apply, Esc to cancel)"),
        None => "q quit · / filter · Esc clear filter · n name · v value · p p99 · s next sort · space pause · ↑↓ scroll".to_owned(),
    };
    f.render_widget(Paragraph::new(help), foot);
}
