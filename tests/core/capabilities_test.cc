#include "core/capabilities.h"

#include "gtest/gtest.h"

namespace popgate::core {
namespace {

TEST(CapabilitiesTest, ImplementationCannotInjectLines) {
  EXPECT_EQ(CapabilityReply(/*authenticated=*/true, "pop\r\nSTLS\r\n"),
            "+OK Capability list follows\r\n"
            "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
            "IMPLEMENTATION popSTLS\r\n.\r\n");
}

TEST(CapabilitiesTest, ImplementationHiddenBeforeLogin) {
  EXPECT_EQ(CapabilityReply(/*authenticated=*/false, "popgate").find("IMPL"),
            std::string::npos);
}

}  // namespace
}  // namespace popgate::core
