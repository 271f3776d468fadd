//! The lvs XDP data plane: LVS direct routing.
//!
//! A frame for a virtual service gets a real server from the service's lookup table (indexed
//! by a hash of the flow), its Ethernet destination set to that server's MAC and its source to
//! the director's, and leaves through the interface it came in on (XDP_TX). Every other frame
//! is passed to the kernel untouched. Each verdict is counted by reason.
//!
//! Architecture invariant: this program never decides policy. The controller builds the lookup
//! tables; the program hashes, looks up and rewrites.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod packet;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
        macros::xdp,
        programs::XdpContext,
    };
    use lvs_common::{
        Counter, LOOKUP_TABLE_SIZE, NO_REAL_SERVER, REAL_SERVER_USABLE, ServiceKey, hash,
    };
    use network_types::eth::EthHdr;

    use crate::{maps::*, packet};

    /// Set to 1 by the controller at load time (`--trace-packets`) to log every forwarding
    /// decision. When 0 the verifier removes the logging branch as dead code, so the default
    /// costs nothing per packet (a log line costs about 125 ns here).
    #[unsafe(no_mangle)]
    static TRACE_PACKETS: u8 = 0;

    #[xdp]
    pub fn lvs(ctx: XdpContext) -> u32 {
        let (action, reason) = match forward(&ctx) {
            Ok(()) => (XDP_TX, Counter::TxForwarded),
            Err(reason) => (action_for(reason), reason),
        };
        count(reason);
        action
    }

    /// The XDP action that goes with a reason for not forwarding.
    #[inline(always)]
    fn action_for(reason: Counter) -> u32 {
        match reason {
            Counter::DropNoRealServer => XDP_DROP,
            Counter::Aborted => XDP_ABORTED,
            _ => XDP_PASS,
        }
    }

    /// Rewrites the frame towards its real server, or says why not.
    #[inline(always)]
    fn forward(ctx: &XdpContext) -> Result<(), Counter> {
        let flow = packet::parse_flow(ctx)?;
        let key = ServiceKey {
            addr: flow.dst_addr,
            port: flow.dst_port,
            protocol: flow.protocol,
            _pad: 0,
        };
        // SAFETY: the controller only inserts and removes whole entries; a value is two u32s
        // read once, so a concurrent update yields the old or the new service, both valid.
        let service = unsafe { SERVICES.get(key) }.ok_or(Counter::PassNotService)?;
        let service_index = service.index;

        let flow_hash = hash::flow_hash(
            flow.src_addr,
            flow.dst_addr,
            flow.src_port,
            flow.dst_port,
            flow.protocol,
        );
        let slot = service_index * LOOKUP_TABLE_SIZE + flow_hash % LOOKUP_TABLE_SIZE;
        let real_server_id = *LOOKUP.get(slot).ok_or(Counter::DropNoRealServer)?;
        if real_server_id == NO_REAL_SERVER {
            return Err(Counter::DropNoRealServer);
        }
        let real_server = REAL_SERVERS
            .get(real_server_id)
            .ok_or(Counter::DropNoRealServer)?;
        if real_server.flags & REAL_SERVER_USABLE == 0 {
            return Err(Counter::DropNoRealServer);
        }
        let director = DIRECTOR.get(0).ok_or(Counter::Aborted)?;

        let eth: *mut EthHdr = packet::ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`; the frame is ours to rewrite in XDP.
        unsafe {
            (*eth).dst_addr = real_server.mac;
            (*eth).src_addr = director.mac;
        }

        let ip_bytes = u64::from(flow.ip_len);
        add_traffic(&SERVICE_STATS, service_index, ip_bytes);
        add_traffic(&REAL_SERVER_STATS, real_server_id, ip_bytes);

        // SAFETY: a read of a plain global that the loader may have patched.
        if unsafe { core::ptr::read_volatile(&TRACE_PACKETS) } != 0 {
            aya_log_ebpf::debug!(
                ctx,
                "forward {}:{} -> real server {}",
                u32::from_be_bytes(flow.src_addr),
                u16::from_be_bytes(flow.src_port),
                real_server_id
            );
        }
        Ok(())
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

/// On the host this crate builds as an empty binary, so `cargo clippy --workspace` and
/// `cargo test --workspace` do not trip over it.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
