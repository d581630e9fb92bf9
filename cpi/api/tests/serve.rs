//! `protocol::serve`: one request's bytes in, one response line out, for any `Cpi`. The CPI here
//! is an in-memory one, since what is under test is the envelope, not a cloud.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rosh_cpi::protocol::{Call, Response, serve};
use rosh_cpi::{
    Cid, Cpi, CpiError, CreateDisk, CreateStemcell, CreateVm, CreatedVm, DiskAttachment, DiskHint, Info, SetVmMetadata,
    SshEndpoint,
};
use serde_json::{Value, json};

/// VMs and disks in maps; disk attachments remembered by VM.
#[derive(Default)]
struct Memory {
    vms: Mutex<BTreeMap<Cid, Vec<Cid>>>,
    disks: Mutex<BTreeMap<Cid, u64>>,
    tags: Mutex<BTreeMap<Cid, BTreeMap<String, String>>>,
    with_ssh: bool,
}

#[async_trait::async_trait]
impl Cpi for Memory {
    async fn info(&self) -> Result<Info, CpiError> {
        Ok(Info { stemcell_formats: vec!["memory".into()], api_version: 2 })
    }

    async fn create_stemcell(&self, req: CreateStemcell) -> Result<Cid, CpiError> {
        Ok(Cid(format!("sc-{}", req.image_path.len())))
    }

    async fn delete_stemcell(&self, _stemcell_cid: Cid) -> Result<(), CpiError> {
        Ok(())
    }

    async fn create_vm(&self, req: CreateVm) -> Result<CreatedVm, CpiError> {
        let vm_cid = Cid(format!("vm-{}", req.agent_id));
        self.vms.lock().unwrap().insert(vm_cid.clone(), vec![]);
        let ssh = self.with_ssh.then(|| SshEndpoint {
            host: req.primary_ip().unwrap_or("127.0.0.1").into(),
            port: 2222,
            user: "vcap".into(),
            host_public_key: "ssh-ed25519 AAAAC3Nza host".into(),
            private_key_path: None,
            agent_command: "rosh-agent".into(),
            root: "/var/vcap".into(),
            install_agent: false,
        });
        Ok(CreatedVm { vm_cid, networks: req.networks, ssh })
    }

    async fn delete_vm(&self, vm_cid: Cid) -> Result<(), CpiError> {
        self.vms.lock().unwrap().remove(&vm_cid).map(drop).ok_or_else(|| CpiError::vm_not_found(&vm_cid))
    }

    async fn has_vm(&self, vm_cid: Cid) -> Result<bool, CpiError> {
        Ok(self.vms.lock().unwrap().contains_key(&vm_cid))
    }

    async fn reboot_vm(&self, vm_cid: Cid) -> Result<(), CpiError> {
        self.has_vm(vm_cid.clone()).await?.then_some(()).ok_or_else(|| CpiError::vm_not_found(&vm_cid))
    }

    async fn set_vm_metadata(&self, req: SetVmMetadata) -> Result<(), CpiError> {
        self.tags.lock().unwrap().insert(req.vm_cid, req.metadata);
        Ok(())
    }

    async fn create_disk(&self, req: CreateDisk) -> Result<Cid, CpiError> {
        let cid = Cid(format!("disk-{}", req.size_mb));
        self.disks.lock().unwrap().insert(cid.clone(), req.size_mb);
        Ok(cid)
    }

    async fn delete_disk(&self, disk_cid: Cid) -> Result<(), CpiError> {
        self.disks.lock().unwrap().remove(&disk_cid).map(drop).ok_or_else(|| CpiError::disk_not_found(&disk_cid))
    }

    async fn has_disk(&self, disk_cid: Cid) -> Result<bool, CpiError> {
        Ok(self.disks.lock().unwrap().contains_key(&disk_cid))
    }

    async fn attach_disk(&self, req: DiskAttachment) -> Result<DiskHint, CpiError> {
        let mut vms = self.vms.lock().unwrap();
        let disks = vms.get_mut(&req.vm_cid).ok_or_else(|| CpiError::vm_not_found(&req.vm_cid))?;
        disks.push(req.disk_cid);
        Ok(json!({"path": format!("/dev/sd{}", (b'b' + disks.len() as u8) as char)}))
    }

    async fn detach_disk(&self, req: DiskAttachment) -> Result<(), CpiError> {
        let mut vms = self.vms.lock().unwrap();
        let disks = vms.get_mut(&req.vm_cid).ok_or_else(|| CpiError::vm_not_found(&req.vm_cid))?;
        disks.retain(|d| *d != req.disk_cid);
        Ok(())
    }

    async fn get_disks(&self, vm_cid: Cid) -> Result<Vec<Cid>, CpiError> {
        self.vms.lock().unwrap().get(&vm_cid).cloned().ok_or_else(|| CpiError::vm_not_found(&vm_cid))
    }
}

async fn answer(cpi: &Memory, request: Value) -> Response {
    answer_bytes(cpi, &serde_json::to_vec(&request).unwrap()).await
}

async fn answer_bytes(cpi: &Memory, input: &[u8]) -> Response {
    let out = serve(cpi, input).await;
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with('\n') && !text.trim_end().contains('\n'), "one line: {text:?}");
    serde_json::from_str(&text).unwrap()
}

fn create_vm(api_version: Option<u32>) -> Value {
    let mut request = json!({
        "method": "create_vm",
        "arguments": [
            "agent-1", "sc-1", {"instance_type": "small"},
            {"default": {"type": "manual", "ip": "127.77.0.5", "default": ["dns", "gateway"]}},
            [], {"bosh": {"group": "g"}}
        ],
        "context": {"director_uuid": "d", "request_id": "cpi-1"}
    });
    if let Some(v) = api_version {
        request["api_version"] = json!(v);
    }
    request
}

#[tokio::test]
async fn known_methods_answer_their_results() {
    let cpi = Memory::default();

    let info = answer(&cpi, json!({"method": "info", "arguments": [], "context": {}})).await;
    assert_eq!(info.error, None);
    assert_eq!(info.result, json!({"stemcell_formats": ["memory"], "api_version": 2}));
    assert_eq!(info.log, "");

    let created = answer(&cpi, create_vm(Some(2))).await;
    assert_eq!(created.error, None);
    assert_eq!(
        created.result,
        json!(["vm-agent-1", {"default": {"type": "manual", "ip": "127.77.0.5", "default": ["dns", "gateway"]}}])
    );

    let disk =
        answer(&cpi, json!({"method": "create_disk", "arguments": [2048, {}, "vm-agent-1"], "api_version": 2})).await;
    assert_eq!(disk.result, json!("disk-2048"));
    let hint =
        answer(&cpi, json!({"method": "attach_disk", "arguments": ["vm-agent-1", "disk-2048"], "api_version": 2}))
            .await;
    assert_eq!(hint.result, json!({"path": "/dev/sdc"}));
    let disks = answer(&cpi, json!({"method": "get_disks", "arguments": ["vm-agent-1"]})).await;
    assert_eq!(disks.result, json!(["disk-2048"]));
    let has = answer(&cpi, json!({"method": "has_vm", "arguments": ["vm-agent-1"]})).await;
    assert_eq!(has.result, json!(true));

    let tagged = answer(&cpi, json!({"method": "set_vm_metadata", "arguments": ["vm-agent-1", {"index": 0}]})).await;
    assert_eq!((tagged.result, tagged.error), (Value::Null, None));
    assert_eq!(cpi.tags.lock().unwrap()[&Cid::from("vm-agent-1")]["index"], "0");
}

#[tokio::test]
async fn create_vm_and_attach_disk_answer_v1_shapes_without_api_version() {
    let cpi = Memory::default();

    let created = answer(&cpi, create_vm(None)).await;
    assert_eq!(created.result, json!("vm-agent-1"));
    let created = answer(&cpi, create_vm(Some(1))).await;
    assert_eq!(created.result, json!("vm-agent-1"));

    let hint = answer(&cpi, json!({"method": "attach_disk", "arguments": ["vm-agent-1", "disk-1"]})).await;
    assert_eq!((hint.result, hint.error), (Value::Null, None));
    assert_eq!(cpi.vms.lock().unwrap()[&Cid::from("vm-agent-1")], vec![Cid::from("disk-1")]);
}

#[tokio::test]
async fn create_vm_v2_carries_the_ssh_endpoint_as_a_third_element() {
    let cpi = Memory { with_ssh: true, ..Memory::default() };

    let created = answer(&cpi, create_vm(Some(2))).await;

    assert_eq!(created.result[0], "vm-agent-1");
    assert_eq!(created.result[2]["ssh"]["host"], "127.77.0.5");
    assert_eq!(created.result[2]["ssh"]["port"], 2222);
    // And a client decodes it back.
    let call = Call::from_request(&serde_json::from_value(create_vm(Some(2))).unwrap()).unwrap();
    let outcome = rosh_cpi::protocol::decode_result(&call, created.result).unwrap();
    let rosh_cpi::protocol::Outcome::Vm(vm) = outcome else { panic!("{outcome:?}") };
    assert_eq!(vm.ssh.unwrap().host_public_key, "ssh-ed25519 AAAAC3Nza host");
}

#[tokio::test]
async fn an_unknown_method_is_not_implemented() {
    let cpi = Memory::default();

    let response = answer(&cpi, json!({"method": "calculate_vm_cloud_properties", "arguments": [{"cpu": 2}]})).await;

    let error = response.error.unwrap();
    assert_eq!(error.error_type, "Bosh::Clouds::NotImplemented");
    assert!(error.message.contains("calculate_vm_cloud_properties"), "{}", error.message);
    assert!(!error.ok_to_retry);
    assert_eq!(response.result, Value::Null);
}

#[tokio::test]
async fn a_method_the_cpi_leaves_to_the_default_is_not_implemented() {
    let cpi = Memory::default();

    let response = answer(&cpi, json!({"method": "resize_disk", "arguments": ["disk-1", 4096]})).await;

    assert_eq!(response.error.unwrap().error_type, "Bosh::Clouds::NotImplemented");
}

#[tokio::test]
async fn undecodable_json_is_an_invalid_call() {
    let cpi = Memory::default();

    for input in [&b"{\"method\": \"create_vm\", \"arguments\": ["[..], b"", b"[1, 2]"] {
        let response = answer_bytes(&cpi, input).await;
        let error = response.error.expect("an error");
        assert_eq!(error.error_type, "InvalidCall", "{input:?}");
        assert!(error.message.contains("CPI request"), "{}", error.message);
    }
}

#[tokio::test]
async fn bad_arguments_are_an_invalid_call_naming_the_argument() {
    let cpi = Memory::default();

    let response = answer(&cpi, json!({"method": "create_disk", "arguments": ["big", {}, null]})).await;

    let error = response.error.unwrap();
    assert_eq!(error.error_type, "InvalidCall");
    assert!(error.message.starts_with("create_disk: arguments[0] (size)"), "{}", error.message);
    assert!(cpi.disks.lock().unwrap().is_empty(), "nothing was created");
}

#[tokio::test]
async fn vm_not_found_passes_through_with_its_bosh_type() {
    let cpi = Memory::default();

    let response = answer(&cpi, json!({"method": "delete_vm", "arguments": ["vm-missing"], "api_version": 2})).await;

    assert_eq!(response.result, Value::Null);
    let error = response.error.unwrap();
    assert_eq!(error.error_type, "Bosh::Clouds::VMNotFound");
    assert_eq!(error.message, "VM `vm-missing` not found");
    assert!(!error.ok_to_retry);
    let has = answer(&cpi, json!({"method": "has_vm", "arguments": ["vm-missing"]})).await;
    assert_eq!(has.result, json!(false));
}
