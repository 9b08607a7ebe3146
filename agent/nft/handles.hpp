#pragma once
// Single-owner wrappers for the C handles of libmnl and libnftnl.
#include <memory>
#include <new>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include "jitd/sys/handle.hpp"

namespace jitd::nft {

using sys::Handle;

using MnlSocket = Handle<mnl_socket, mnl_socket_close>;
using Table = Handle<nftnl_table, nftnl_table_free>;
using Set = Handle<nftnl_set, nftnl_set_free>;
using SetElem = Handle<nftnl_set_elem, nftnl_set_elem_free>;
using Chain = Handle<nftnl_chain, nftnl_chain_free>;
using Rule = Handle<nftnl_rule, nftnl_rule_free>;
using Expr = Handle<nftnl_expr, nftnl_expr_free>;

// libnftnl allocators only fail when memory is exhausted, which is not a kernel error.
template <class H, class T>
H allocate(T* raw) {
  if (raw == nullptr) throw std::bad_alloc();
  return H(raw);
}

}  // namespace jitd::nft
