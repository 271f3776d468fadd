//! A raw `AF_PACKET` socket bound to one interface and one EtherType, for the doctor's ARP
//! and neighbour-discovery probes: whole Ethernet frames out, the frames that arrive in.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use tokio::io::{Interest, unix::AsyncFd};

/// A raw packet socket on one interface, for one EtherType.
pub struct PacketSocket {
    fd: AsyncFd<OwnedFd>,
}

impl PacketSocket {
    /// Opens the socket for `ether_type` (host order, such as `ETH_P_ARP`) and binds it to
    /// the interface; needs CAP_NET_RAW.
    pub fn open(if_index: u32, ether_type: u16) -> io::Result<Self> {
        let protocol = ether_type.to_be();
        // SAFETY: socket() takes no pointers; a valid descriptor is owned from here on.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let address = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: protocol,
            sll_ifindex: i32::try_from(if_index)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: the pointer and length describe `address`, which lives across the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the descriptor for its whole life, so the descriptor it
        // registered is the one it reads, and it is closed only after deregistration.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)?;
        Ok(Self { fd })
    }

    /// Sends a whole Ethernet frame out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `frame`, which lives across the call.
        let sent = unsafe {
            libc::send(
                self.fd.get_ref().as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the next frame that arrived on the interface (frames this host sent are
    /// skipped: the socket sees them too) and returns its length in `buffer`.
    pub async fn recv_incoming(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let received = guard.try_io(|fd| {
                // SAFETY: zeroed is a valid sockaddr_ll; recvfrom writes at most `length`
                // bytes into it and at most `buffer.len()` bytes into `buffer`.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut length = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = unsafe {
                    libc::recvfrom(
                        fd.get_ref().as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        0,
                        (&raw mut from).cast(),
                        &mut length,
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok((n.unsigned_abs(), from.sll_pkttype))
            });
            match received {
                Ok(Ok((length, kind))) if kind != libc::PACKET_OUTGOING => return Ok(length),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => {}
            }
        }
    }
}
