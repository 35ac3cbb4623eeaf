//! The chain the fixtures run on: every fork up to Cancun active from genesis, chain id 1.

use alloy_eips::eip6110::MAINNET_DEPOSIT_CONTRACT_ADDRESS;
use alloy_evm::eth::spec::EthExecutorSpec;
use alloy_hardforks::{EthereumChainHardforks, EthereumHardfork, EthereumHardforks, ForkCondition};
use alloy_primitives::Address;

/// The chain id the fixtures are signed for.
pub const CHAIN_ID: u64 = 1;

/// Hardforks up to Cancun, all active at genesis (no DAO fork, no block rewards after Paris).
#[derive(Clone, Debug)]
pub struct CancunSpec {
    hardforks: EthereumChainHardforks,
}

impl Default for CancunSpec {
    fn default() -> Self {
        use EthereumHardfork as H;
        let by_block = [
            H::Frontier,
            H::Homestead,
            H::Tangerine,
            H::SpuriousDragon,
            H::Byzantium,
            H::Constantinople,
            H::Petersburg,
            H::Istanbul,
            H::MuirGlacier,
            H::Berlin,
            H::London,
            H::ArrowGlacier,
            H::GrayGlacier,
            H::Paris,
        ]
        .map(|fork| (fork, ForkCondition::Block(0)));
        let by_time = [H::Shanghai, H::Cancun].map(|fork| (fork, ForkCondition::Timestamp(0)));
        Self {
            hardforks: EthereumChainHardforks::new(by_block.into_iter().chain(by_time)),
        }
    }
}

impl EthereumHardforks for CancunSpec {
    fn ethereum_fork_activation(&self, fork: EthereumHardfork) -> ForkCondition {
        self.hardforks.ethereum_fork_activation(fork)
    }
}

impl EthExecutorSpec for CancunSpec {
    fn deposit_contract_address(&self) -> Option<Address> {
        Some(MAINNET_DEPOSIT_CONTRACT_ADDRESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::primitives::hardfork::SpecId;

    #[test]
    fn cancun_from_genesis() {
        let spec = CancunSpec::default();
        assert_eq!(
            alloy_evm::spec_by_timestamp_and_block_number(&spec, 0, 0),
            SpecId::CANCUN
        );
        assert!(!spec.is_prague_active_at_timestamp(u64::MAX));
        assert!(spec.is_paris_active_at_block(0));
    }
}
