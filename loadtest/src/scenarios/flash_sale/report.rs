//! A buyline sale in the report: its figures, its latencies and the checks it fails on.

use super::Sale;
use crate::cli::{FlashSaleArgs, Transport};
use crate::report::{Report, Series};
use crate::threshold::Headline;

/// How buyline's buyers reach it in this run, for the report.
pub fn mode(args: &FlashSaleArgs) -> &'static str {
    match (args.transport, args.fresh_connections) {
        (Transport::Ws, false) => "WebSocket `reserve`, one open stream per buyer",
        (Transport::Ws, true) => {
            "WebSocket `reserve`, a fresh /v1/stream?token= connection per attempt (connect, reserve, close)"
        }
        (Transport::Http, false) => "POST /v1/reservations, one keep-alive connection per buyer",
        (Transport::Http, true) => {
            "POST /v1/reservations, a fresh connection per attempt (connect, POST, close)"
        }
    }
}

/// Server CPU per reservation attempt, in µs (connects included when there are any).
pub(super) fn cpu_per_attempt(sale: &Sale) -> Option<f64> {
    let cpu = sale.cpu?;
    (sale.attempts > 0).then(|| cpu * 1e6 / sale.attempts as f64)
}

/// Adds a buyline sale to the report with its checks; `oversold` is the figure the run fails on.
pub fn report_buyline(report: &mut Report, args: &FlashSaleArgs, sale: &Sale) {
    let secs = sale.elapsed.as_secs_f64();
    report.note(format!("buyline: {}", mode(args)));
    report.buyline("reservation attempts", "requests", sale.attempts as f64);
    report.buyline("attempts/s", "requests/s", sale.attempts as f64 / secs);
    if args.fresh_connections {
        report.buyline("connections opened", "connections", sale.connects as f64);
        report.note(
            "fresh connections: attempts/s, server CPU per reservation and the reserve latency \
             (connect + reserve) all count the connects; the close is in the CPU and the time, \
             not in the latency",
        );
    }
    report.buyline("holds", "units", sale.holds as f64);
    report.buyline("holds/s", "units/s", sale.holds as f64 / secs);
    report.buyline("orders", "orders", sale.orders as f64);
    report.buyline("time to sell out or stop", "s", secs);
    if let Some(cpu) = sale.cpu {
        report.buyline("server CPU", "cores", cpu / secs);
        if let Some(per_attempt) = cpu_per_attempt(sale) {
            report.buyline("server CPU per reservation", "µs", per_attempt);
        }
    }
    if let Some(cpu) = sale.tester_cpu {
        report.buyline("tester CPU (same machine)", "cores", cpu / secs);
    }
    let reserve_latency = sale.reserve_latency.snapshot();
    report.latency(None, "reserve latency", &reserve_latency);
    report.headline = Some(Headline {
        latency_name: "reserve latency".into(),
        latency: Some(reserve_latency),
        requests: sale.attempts,
        errors: sale.errors + sale.checkout_errors,
        rate: sale.attempts as f64 / secs,
    });
    match &sale.open_loop {
        Some(open) => {
            // A sale that sells out stops sending: what was due after that is not owed.
            let sent = (!sale.sold_out).then_some(sale.attempts);
            open.report(report, "reservation attempts", sent);
        }
        None => report.note(format!(
            "mode: closed loop, {} attempts in flight (each sent when one is answered)",
            args.concurrency.max(1)
        )),
    }
    if args.checkout {
        report.latency(None, "checkout latency", &sale.checkout_latency.snapshot());
    }
    let mut oversold = sale.holds.saturating_sub(args.stock);
    let mut detail = format!("{} holds acknowledged for {} units", sale.holds, args.stock);
    match sale.inventory {
        Some((available, held, sold)) => {
            oversold += (held + sold).saturating_sub(args.stock);
            detail.push_str(&format!(
                "; server: available {available}, held {held}, sold {sold}"
            ));
            report.check(
                "stock adds up (available + held + sold = stock)",
                available + held + sold == args.stock,
                format!("{} = {}", available + held + sold, args.stock),
            );
            report.check(
                "every acknowledged hold is held or sold, and nothing else",
                held + sold == sale.holds,
                format!("server {} vs acknowledged {}", held + sold, sale.holds),
            );
        }
        None => report.check(
            "inventory readable",
            false,
            "GET /v1/admin/products/{id}/inventory failed",
        ),
    }
    report.buyline("oversold", "units", oversold as f64);
    report.check("oversold = 0", oversold == 0, detail);
    report.check(
        "no reservation errors",
        sale.errors == 0,
        format!(
            "{} errors{}",
            sale.errors,
            sale.first_error
                .as_ref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
        ),
    );
    if args.checkout {
        report.check(
            "every hold paid",
            sale.checkout_errors == 0 && sale.orders == sale.holds,
            format!(
                "{} orders of {} holds, {} checkout errors{}",
                sale.orders,
                sale.holds,
                sale.checkout_errors,
                sale.first_error
                    .as_ref()
                    .map(|e| format!(", first: {e}"))
                    .unwrap_or_default()
            ),
        );
    }
    report.series.push(Series {
        name: "buyline reservation attempts/s".into(),
        points: sale.samples.iter().map(|s| (s.t, s.rates[0])).collect(),
    });
}
