//! `openleadr-client` 0.2.8 (LF Energy OpenLEADR's Rust client, crates.io)
//! drives gridlink-cloud's VTN over HTTP, exactly as it would drive any
//! OpenADR 3.1 VTN: OAuth client credentials at `/auth/token`, a BL client
//! that creates, lists, pages, updates and deletes programs and events, a
//! VEN client that registers, adds a resource, reads the events it is
//! targeted by (and not the others) and reports on them.
//!
//! The cloud is the real binary (`GRIDLINK_CLOUD_BIN`, else the workspace's
//! debug build) over SQLite, with a real Mosquitto (mTLS) from
//! gridlink-testkit; the OAuth clients are made by its own CLI.

use std::str::FromStr;

use gridlink_interop::Cloud;
use openleadr_client::{
    BusinessLogic, Client, ClientCredentials, Filter, PaginationOptions, VirtualEndNode,
};
use openleadr_wire::event::{EventInterval, EventType, EventValuesMap, Priority};
use openleadr_wire::interval::Interval;
use openleadr_wire::program::ProgramRequest;
use openleadr_wire::report::{ReportResource, ResourceName};
use openleadr_wire::target::Target;
use openleadr_wire::values_map::{Value, ValueType, ValuesMap};
use openleadr_wire::ven::VenVenRequest;

fn program(name: &str, targets: &[&str]) -> ProgramRequest {
    ProgramRequest {
        program_name: name.to_string(),
        interval_period: None,
        program_descriptions: None,
        payload_descriptors: None,
        attributes: None,
        targets: targets
            .iter()
            .map(|t| Target::from_str(t).unwrap())
            .collect(),
    }
}

fn price(value: f64) -> Vec<EventInterval> {
    vec![EventInterval {
        id: 0,
        interval_period: None,
        payloads: vec![EventValuesMap {
            value_type: EventType::Price,
            values: vec![Value::Number(value)],
        }],
    }]
}

fn client<K: openleadr_client::ClientKind>(cloud: &Cloud, id: &str, secret: &str) -> Client<K> {
    Client::with_url(
        cloud.vtn_url().parse().unwrap(),
        Some(ClientCredentials::new(id.to_string(), secret.to_string())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openleadr_client_bl_and_ven_flows() {
    let cloud = Cloud::start().await;
    let (bl_id, bl_secret) = cloud.oauth_client("bl", "interop-bl");
    let (ven_id, ven_secret) = cloud.oauth_client("ven", "interop-ven");
    let (other_id, other_secret) = cloud.oauth_client("ven", "interop-other");
    let bl: Client<BusinessLogic> = client(&cloud, &bl_id, &bl_secret);
    let ven: Client<VirtualEndNode> = client(&cloud, &ven_id, &ven_secret);
    let other: Client<VirtualEndNode> = client(&cloud, &other_id, &other_secret);

    // BL: a program, a name clash, events with and without targets.
    let demo = bl
        .create_program(program("interop-program", &[]))
        .await
        .unwrap();
    assert_eq!(demo.content().program_name, "interop-program");
    let clash = bl
        .create_program(program("interop-program", &[]))
        .await
        .unwrap_err();
    assert!(clash.is_conflict(), "{clash:?}");
    let mut for_ven = demo.new_event(price(0.31));
    for_ven.event_name = Some("for interop-ven-1".into());
    for_ven.priority = Priority::new(3);
    for_ven.targets = vec![Target::from_str("interop-ven-1").unwrap()];
    let mut for_ven = demo.create_event(for_ven).await.unwrap();
    let mut for_other = demo.new_event(price(0.5));
    for_other.targets = vec![Target::from_str("interop-ven-2").unwrap()];
    let for_other = demo.create_event(for_other).await.unwrap();
    // An event the VTN stores as the spec allows: no intervals.
    let mut bare = openleadr_wire::event::EventRequest::new(demo.id().clone());
    bare.event_name = Some("no intervals".into());
    let bare = demo.create_event(bare).await.unwrap();
    assert_eq!(bare.content().intervals, None);

    // The BL reads back what it wrote, field for field.
    let got = bl.get_event_by_id(for_ven.id()).await.unwrap();
    assert_eq!(got.content(), for_ven.content());
    let events = bl
        .get_event_list(Some(demo.id()), Filter::none())
        .await
        .unwrap();
    assert_eq!(events.len(), 3);

    // Update: the VTN bumps modificationDateTime and keeps the change.
    let before = for_ven.modification_date_time();
    for_ven.content_mut().event_name = Some("renamed".into());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    for_ven.update().await.unwrap();
    assert!(for_ven.modification_date_time() > before);
    assert_eq!(
        bl.get_event_by_id(for_ven.id())
            .await
            .unwrap()
            .content()
            .event_name
            .as_deref(),
        Some("renamed")
    );

    // VENs register themselves and add a resource (no venID: the VTN takes
    // the client's VEN).
    let ven_1 = ven
        .create_ven(VenVenRequest {
            ven_name: "interop-ven-1".into(),
            attributes: Some(vec![ValuesMap {
                value_type: ValueType("LOCATION".into()),
                values: vec![Value::String("depot".into())],
            }]),
        })
        .await
        .unwrap();
    assert_eq!(ven_1.content().ven_name, "interop-ven-1");
    let resource = ven_1.create_resource("meter-1", None).await.unwrap();
    assert_eq!(resource.content().resource_name, "meter-1");
    let clash = ven_1.create_resource("meter-1", None).await.unwrap_err();
    assert!(clash.is_conflict(), "{clash:?}");
    other
        .create_ven(VenVenRequest {
            ven_name: "interop-ven-2".into(),
            attributes: None,
        })
        .await
        .unwrap();
    // A VEN sees its own VEN only; the BL sees both.
    let mine = ven.get_ven_list(Filter::none()).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].content().ven_name, "interop-ven-1");
    let all = bl.get_ven_list(Filter::none()).await.unwrap();
    assert!(all.len() >= 2, "{}", all.len());
    assert_eq!(
        bl.get_ven_by_name("interop-ven-2")
            .await
            .unwrap()
            .content()
            .client_id
            .to_string(),
        other_id
    );

    // The VEN reads the programs and the events it may: its own, and the
    // untargeted one, never interop-ven-2's.
    let programs = ven.get_program_list(Filter::none()).await.unwrap();
    assert!(programs.iter().any(|p| p.id() == demo.id()));
    let seen: Vec<_> = ven
        .get_event_list(Some(demo.id()), Filter::none())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id().clone())
        .collect();
    assert!(seen.contains(for_ven.id()), "{seen:?}");
    assert!(seen.contains(bare.id()), "{seen:?}");
    assert!(!seen.contains(for_other.id()), "{seen:?}");
    let hidden = ven.get_event_by_id(for_other.id()).await.unwrap_err();
    assert!(hidden.is_not_found() || hidden.is_forbidden(), "{hidden:?}");

    // The VEN reports on its event; the BL cannot write reports.
    let event = ven.get_event_by_id(for_ven.id()).await.unwrap();
    let mut request = event.new_report("interop-ven-1".into());
    request.resources = vec![ReportResource {
        resource_name: ResourceName::Private("meter-1".into()),
        interval_period: None,
        intervals: vec![Interval::new(
            0,
            vec![ValuesMap {
                value_type: ValueType("USAGE".into()),
                values: vec![Value::Number(12.5)],
            }],
        )],
    }];
    let mut report = event.create_report(request.clone()).await.unwrap();
    assert_eq!(report.content(), &request);
    let reports = event.get_report_list(None).await.unwrap();
    assert_eq!(reports.len(), 1);
    let refused = got
        .create_report(got.new_report("bl".into()))
        .await
        .unwrap_err();
    assert!(refused.is_forbidden(), "{refused:?}");
    let before = *report.modification_date_time();
    report.content_mut().report_name = Some("renamed".into());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    report.update().await.unwrap();
    assert!(report.modification_date_time() > &before);
    // The BL reads every report; the other VEN none of them.
    assert_eq!(got.get_report_list(None).await.unwrap().len(), 1);
    let others = other.get_event_by_id(bare.id()).await.unwrap();
    assert!(others.get_report_list(None).await.unwrap().is_empty());
    report.delete().await.unwrap();
    assert!(event.get_report_list(None).await.unwrap().is_empty());

    // Filters and paging: 60 more programs, two of them targeted.
    for i in 0..60 {
        let targets: &[&str] = if i % 30 == 0 { &["group-x"] } else { &[] };
        bl.create_program(program(&format!("bulk-{i:02}"), targets))
            .await
            .unwrap();
    }
    let listed = bl.get_program_list(Filter::none()).await.unwrap();
    assert_eq!(listed.len(), 61, "every page (limit 50) walked");
    let page = bl
        .get_programs(Filter::none(), PaginationOptions { skip: 10, limit: 5 })
        .await
        .unwrap();
    let names: Vec<_> = page
        .iter()
        .map(|p| p.content().program_name.clone())
        .collect();
    assert_eq!(
        names,
        ["bulk-09", "bulk-10", "bulk-11", "bulk-12", "bulk-13"]
    );
    let targeted = bl.get_program_list(Filter::By(&["group-x"])).await.unwrap();
    let names: Vec<_> = targeted
        .iter()
        .map(|p| p.content().program_name.clone())
        .collect();
    assert_eq!(names, ["bulk-00", "bulk-30"]);

    // Deleting: an event, then the program with the rest of its events.
    let other_id = for_other.id().clone();
    for_other.delete().await.unwrap();
    let missing = bl.get_event_by_id(&other_id).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
    let _ = bare;
    demo.delete().await.unwrap();
    let missing = bl.get_event_by_id(for_ven.id()).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
    cloud.assert_no_server_errors().await;
}
