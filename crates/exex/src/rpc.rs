//! The `kiln_` JSON-RPC namespace: a node operator switches compiled code on and off, pauses
//! compilation and reads the service's status at run time.
//!
//! | method | params | result |
//! | --- | --- | --- |
//! | `kiln_setEnabled` | `[bool]` | `null` |
//! | `kiln_pause` | `[]` | `null` |
//! | `kiln_resume` | `[]` | `null` |
//! | `kiln_clear` | `[]` | `null` |
//! | `kiln_status` | `[]` | [`KilnStatus`] |
//!
//! Requests act through a [`ServiceControl`], so they take effect at the service's next poll.
//! [`serve`] runs a stand-alone HTTP and WebSocket server; [`module`] gives the methods to merge
//! into a node's own server.

use crate::{
    control::ServiceControl,
    status::{SharedStatus, StatusSnapshot},
};
use jsonrpsee::{
    core::RpcResult,
    proc_macros::rpc,
    server::{RpcModule, Server, ServerHandle},
};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// A loopback address for [`serve`]: the endpoint controls the node, so it is not for remote
/// callers unless the operator says so.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8549));

/// The result of `kiln_status`. Serialized in camelCase.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KilnStatus {
    /// Whether compiled code is enabled (as requested; the service applies it at its next poll).
    pub enabled: bool,
    /// Whether compilations are paused.
    pub paused: bool,
    /// The service's state when it last published it.
    pub snapshot: StatusSnapshot,
}

/// The `kiln_` methods.
#[rpc(server, namespace = "kiln")]
pub trait KilnApi {
    /// Enables or disables compiled code (see [`ServiceControl::set_enabled`]).
    #[method(name = "setEnabled")]
    fn set_enabled(&self, enabled: bool) -> RpcResult<()>;

    /// Stops starting compilations; the queue keeps filling.
    #[method(name = "pause")]
    fn pause(&self) -> RpcResult<()>;

    /// Starts compilations again.
    #[method(name = "resume")]
    fn resume(&self) -> RpcResult<()>;

    /// Drops the compiled code the service installed and its queued jobs (heat stays).
    #[method(name = "clear")]
    fn clear(&self) -> RpcResult<()>;

    /// The control flags and the latest status snapshot.
    #[method(name = "status")]
    fn status(&self) -> RpcResult<KilnStatus>;
}

/// The server side of [`KilnApiServer`]: a control handle and the shared status.
#[derive(Clone, Debug)]
pub struct KilnRpc {
    control: ServiceControl,
    status: SharedStatus,
}

impl KilnRpc {
    /// Methods acting on `control`, reporting `status`.
    pub fn new(control: ServiceControl, status: SharedStatus) -> Self {
        Self { control, status }
    }
}

impl KilnApiServer for KilnRpc {
    fn set_enabled(&self, enabled: bool) -> RpcResult<()> {
        self.control.set_enabled(enabled);
        Ok(())
    }

    fn pause(&self) -> RpcResult<()> {
        self.control.pause();
        Ok(())
    }

    fn resume(&self) -> RpcResult<()> {
        self.control.resume();
        Ok(())
    }

    fn clear(&self) -> RpcResult<()> {
        self.control.clear();
        Ok(())
    }

    fn status(&self) -> RpcResult<KilnStatus> {
        Ok(KilnStatus {
            enabled: self.control.is_enabled(),
            paused: self.control.is_paused(),
            snapshot: self.status.get(),
        })
    }
}

/// The `kiln_` methods as a module, to merge into a node's RPC server.
pub fn module(control: ServiceControl, status: SharedStatus) -> RpcModule<KilnRpc> {
    KilnRpc::new(control, status).into_rpc()
}

/// Serves the `kiln_` methods over HTTP and WebSocket on `addr` (usually [`DEFAULT_ADDR`]; port
/// 0 picks a free one) from the current Tokio runtime. Returns the bound address and the handle
/// that stops the server.
pub async fn serve(
    addr: SocketAddr,
    control: ServiceControl,
    status: SharedStatus,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let server = Server::builder().build(addr).await?;
    let bound = server.local_addr()?;
    Ok((bound, server.start(module(control, status))))
}
