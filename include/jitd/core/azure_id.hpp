#pragma once
// Azure's names for a virtual machine, read the same way wherever jitd meets them: in an
// initiate request (api/azure.hpp) and in a policy being imported (config/azure_import.hpp).
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace jitd::core {

// The VM's name in an ARM id
// /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/virtualMachines/<name>
// (fixed segments in any case, as ARM reads them), or `id` itself when it is a bare VM name
// (1 to 64 letters, digits, '-', '_', '.'); nullopt for anything else (another resource type, a
// missing segment, "").
[[nodiscard]] std::optional<std::string> azure_vm_name(std::string_view id);

// What azure_vm_name expects, for error messages.
inline constexpr std::string_view azure_vm_id_form =
    "/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/"
    "virtualMachines/<name>, or the VM's name";

// How much of an id an error quotes: a whole ARM VM id (about 130 characters), yet bounded.
inline constexpr std::size_t max_quoted_azure_id = 160;

// Whether two VM names are the same: Azure's VM names ignore case, as host names do.
[[nodiscard]] bool same_vm_name(std::string_view a, std::string_view b);

}  // namespace jitd::core
