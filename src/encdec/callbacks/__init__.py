"""Lightning callbacks: training throughput."""
