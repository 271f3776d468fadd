//! `lvsadm -L`'s snapshot, built from the model's typed views (services and real servers with
//! their ids), the data plane's counters, the rate estimators and the connection list.
//!
//! Real servers are listed as ipvsadm lists IPVS under keepalived: what is in effect, not what
//! is configured. A server that health checking removed is left out, an inhibited one shows
//! weight 0, and a sorry server appears only while it takes the traffic.

use crate::logic::{
    api::{
        RealServerConfig, ServiceConfig, ServiceKey, Timeouts,
        snapshot::{Connection, Rates, RealServerEntry, ServiceEntry, Snapshot, Stats},
    },
    conntrack,
    dataplane::{DataPlane, DataPlaneError},
    model::{Model, RealServerStats, RealServerView},
    rates::{self, RateBook},
};

/// Everything a listing shows. `connections` is the connection list when the request asked
/// for it (it can be large), and empty otherwise.
pub fn collect(
    model: &Model,
    dataplane: &dyn DataPlane,
    rates: &RateBook,
    timeouts: Timeouts,
    connections: &[conntrack::Connection],
    connection_table_size: u32,
) -> Result<Snapshot, DataPlaneError> {
    let real_server_stats = model.real_server_stats(dataplane)?;
    let services = model
        .services()
        .map(|view| {
            let port = view.service.port;
            let real_servers = view
                .real_servers
                .iter()
                .filter_map(|rs| real_server(rs, port, &real_server_stats, rates))
                .collect();
            Ok(ServiceEntry {
                service: ServiceKey::of(view.service),
                config: ServiceConfig::of(view.service),
                stats: stats(dataplane.service_stats(view.index)?),
                rates: rate(rates.service(view.index)),
                real_servers,
            })
        })
        .collect::<Result<_, DataPlaneError>>()?;
    Ok(Snapshot {
        connection_table_size,
        timeouts,
        services,
        connections: connections.iter().map(connection).collect(),
    })
}

/// A real server as it is in effect, or none when it is out of the service's scheduling.
fn real_server(
    rs: &RealServerView<'_>,
    port: u16,
    real_server_stats: &RealServerStats,
    rates: &RateBook,
) -> Option<RealServerEntry> {
    let weight = rs.admitted_weight?;
    Some(RealServerEntry {
        server: RealServerConfig {
            weight,
            ..RealServerConfig::of(rs.config)
        },
        port,
        active_conns: rs.connections.active,
        inactive_conns: rs.connections.inactive,
        persistent_conns: rs.connections.persistent,
        stats: stats(real_server_stats.of(rs.id)),
        rates: rate(rates.real_server(rs.id)),
    })
}

/// In direct routing replies never pass the director: outbound counters stay zero.
fn stats(counted: lvs_common::TrafficStats) -> Stats {
    Stats {
        conns: counted.connections,
        inpkts: counted.packets,
        outpkts: 0,
        inbytes: counted.bytes,
        outbytes: 0,
    }
}

fn rate(estimated: rates::Rates) -> Rates {
    Rates {
        cps: estimated.connections.round() as u64,
        inpps: estimated.packets.round() as u64,
        outpps: 0,
        inbps: estimated.bytes.round() as u64,
        outbps: 0,
    }
}

fn connection(c: &conntrack::Connection) -> Connection {
    Connection {
        protocol: c.protocol,
        expires: u32::try_from(c.expires_s).unwrap_or(u32::MAX),
        state: c.state,
        source: c.source,
        virtual_service: c.virtual_address,
        destination: c.destination,
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, net::Ipv4Addr};

    use super::*;
    use crate::logic::{
        api::{ForwardMethod, Protocol, Scheduler, snapshot::ConnectionState},
        config,
        dataplane::FakeDataPlane,
        model::ConnectionCounts,
    };

    #[test]
    fn services_servers_counts_and_connections_come_typed_from_the_model() {
        let services = config::parse(
            "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.100\"\n\
             port = 53\nprotocol = \"UDP\"\nlb_algo = \"rr\"\n\
             [[virtual_server.real_server]]\naddress = \"10.0.0.11\"\nweight = 3\nuthreshold = 9\n\
             [[virtual_server.real_server]]\naddress = \"10.0.0.12\"\n",
            "t.toml",
        )
        .unwrap()
        .services;
        let mut model = Model::new(&services).unwrap();
        let counts = ConnectionCounts {
            active: 2,
            inactive: 3,
            persistent: 1,
        };
        model.set_connection_counts(HashMap::from([(1, counts)]));
        let connection = conntrack::Connection {
            protocol: Protocol::Udp,
            expires_s: u64::MAX,
            state: ConnectionState::Udp,
            source: "10.0.0.2:5353".parse().unwrap(),
            virtual_address: "10.0.0.100:53".parse().unwrap(),
            destination: "10.0.0.12:53".parse().unwrap(),
            template: false,
        };
        let snapshot = collect(
            &model,
            &FakeDataPlane::default(),
            &RateBook::default(),
            Timeouts::DEFAULT,
            &[connection],
            4096,
        )
        .unwrap();
        assert_eq!(snapshot.connection_table_size, 4096);
        assert_eq!(snapshot.timeouts, Timeouts::DEFAULT);
        let [service] = &snapshot.services[..] else {
            panic!("{snapshot:?}");
        };
        assert_eq!(
            service.service,
            ServiceKey {
                protocol: Protocol::Udp,
                address: Ipv4Addr::new(10, 0, 0, 100).into(),
                port: 53,
            }
        );
        assert_eq!(service.config.scheduler, Scheduler::RoundRobin);
        let servers: Vec<_> = service
            .real_servers
            .iter()
            .map(|rs| {
                (
                    rs.server,
                    rs.port,
                    rs.active_conns,
                    rs.inactive_conns,
                    rs.persistent_conns,
                )
            })
            .collect();
        let server = |last, weight, u_threshold| RealServerConfig {
            address: Ipv4Addr::new(10, 0, 0, last).into(),
            forward: ForwardMethod::Route,
            weight,
            u_threshold,
            l_threshold: 0,
        };
        assert_eq!(
            servers,
            [
                (server(11, 3, 9), 53, 0, 0, 0),
                (server(12, 1, 0), 53, 2, 3, 1)
            ]
        );
        let [listed] = &snapshot.connections[..] else {
            panic!("{snapshot:?}");
        };
        assert_eq!(listed.expires, u32::MAX, "clamped, not wrapped");
        assert_eq!(listed.state, ConnectionState::Udp);
        assert_eq!(listed.virtual_service, connection.virtual_address);
        assert_eq!(listed.destination, connection.destination);
    }
}
