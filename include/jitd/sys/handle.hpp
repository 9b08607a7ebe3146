#pragma once
// The one RAII owner for C library handles: a unique_ptr whose deleter is the library's own
// free function (mnl_socket_close, nftnl_set_free, nfct_destroy, ...).
#include <memory>

namespace jitd::sys {

template <auto Free>
struct Deleter {
  void operator()(auto* handle) const { Free(handle); }
};

template <class T, auto Free>
using Handle = std::unique_ptr<T, Deleter<Free>>;

}  // namespace jitd::sys
