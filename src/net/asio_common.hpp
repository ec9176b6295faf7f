// Shared asio vocabulary for the modules allowed to touch sockets and the loop (which ones:
// the `asio` rule of docs/architecture.md §2, enforced by layering_test): the awaitable type,
// the no-throw completion token and error conversion.
#pragma once

#include <string_view>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include "common/status.hpp"

namespace qccl::net {

using asio::awaitable;
using tcp = asio::ip::tcp;

// Completion token that returns (error_code, values...) instead of throwing.
inline constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// "read from peer 3: Connection reset by peer"
inline Status io_status(StatusCode code, std::string_view what, const asio::error_code& ec) {
  return make_status(code, "{}: {}", what, ec.message());
}

}  // namespace qccl::net
