#pragma once
// Azure's just-in-time policy (Microsoft.Security jitNetworkAccessPolicies) turned into a jitd
// policy file, so a fleet moving off Azure keeps the rules it has. Pure: text in, text out;
// `jitctl import-azure` reads and writes the files. docs/azure.md describes it.
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/error.hpp"

namespace jitd::config {

struct ImportedPolicy {
  // A policy file jitd reads as it is (keys as in docs/policy.md), with comments saying where
  // it came from and what was not imported.
  std::string yaml;
  // "<field path>: what was not imported and why", in the order met.
  std::vector<std::string> warnings;
  // The ARM id of the VM whose rules these are.
  std::string vm_id;
};

// Reads any of:
//  - one policy as GET returns it: {"id", "name", "properties": {"virtualMachines": [...],
//    "requests": [...], "provisioningState"}, ...}, or the PUT body (the same without id and
//    requests);
//  - a list as GET returns it: {"value": [<policy>, ...]};
//  - PowerShell's shapes: Set-AzJitNetworkAccessPolicy's -VirtualMachine array
//    [{"id", "ports": [{"number", "protocol", "allowedSourceAddressPrefix": ["..."],
//    "maxRequestAccessDuration"}]}] (or one such object), and Get-AzJitNetworkAccessPolicy's
//    object ({"Id", "VirtualMachines": [...]}): keys are matched ignoring case, as Azure and
//    PowerShell match them.
// A host is one VM: with several in the file, `vm_name` picks one (its name, ignoring case);
// without it that is an error listing the names. Errors and warnings name the field's path
// ("value[0].properties.virtualMachines[1].ports[0].protocol: ...").
// Errors: what would change what the host protects (a protocol other than TCP, UDP and *, a
// prefix that is not one, a duration over 24 hours, a field of a port rule jitd does not know,
// two rules for one port). Warnings: what stays in Azure (requests, an Azure Firewall's
// publicIpAddress, mappedPort / toPort port forwarding, unknown fields outside port rules).
[[nodiscard]] core::Result<ImportedPolicy> import_azure_policy(std::string_view json,
                                                               std::string_view vm_name = {});

}  // namespace jitd::config
