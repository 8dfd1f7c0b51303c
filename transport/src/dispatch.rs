//! The [`Dispatch`] trait — one method per RPC of the protocol's table, each defaulting to
//! `UNIMPLEMENTED_REQUEST` — and [`dispatch`], which routes an incoming RPC to its method. Both
//! are generated from the one table in the protocol crate
//! ([`faascache_protocol::for_each_rpc!`]), so a new RPC is one line there: a service implements
//! only the methods it serves.

use crate::server::{Handler, IncomingRpc};
use faascache_protocol::wire::{Opcode, Status};

macro_rules! define_dispatch {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal => $method:ident, )*) => {
        /// A service: one method per RPC type, each defaulting to `UNIMPLEMENTED_REQUEST`.
        /// Implement the ones you serve and route with [`dispatch`]. Generated from the table.
        #[allow(unused_variables)]
        pub trait Dispatch {
            $(
                $(#[doc = $doc])*
                fn $method(&self, call: &mut IncomingRpc<'_>) {
                    call.reply(Status::UNIMPLEMENTED_REQUEST, &[]);
                }
            )*
        }

        /// A shared service serves like the service itself (`DispatchHandler(Arc<S>)`).
        impl<D: Dispatch + ?Sized> Dispatch for std::sync::Arc<D> {
            $(
                $(#[doc = $doc])*
                fn $method(&self, call: &mut IncomingRpc<'_>) {
                    (**self).$method(call)
                }
            )*
        }

        /// Route `call` to the [`Dispatch`] method for its opcode.
        pub fn dispatch<D: Dispatch + ?Sized>(service: &D, call: &mut IncomingRpc<'_>) {
            match call.opcode() {
                $( Opcode::$name => service.$method(call), )*
                // `Opcode` is non-exhaustive; every variant is matched above (same table).
                _ => call.reply(Status::UNIMPLEMENTED_REQUEST, &[]),
            }
        }
    };
}

faascache_protocol::for_each_rpc!(define_dispatch);

/// Adapts a [`Dispatch`] service (one method per RPC type) into a [`Handler`].
#[derive(Debug)]
pub struct DispatchHandler<D>(pub D);

impl<D: Dispatch + Send + Sync + 'static> Handler for DispatchHandler<D> {
    fn handle(&self, call: &mut IncomingRpc<'_>) {
        dispatch(&self.0, call)
    }
}
