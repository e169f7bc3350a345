ws.send(
    JSON.stringify({
        method: 'gsmSendSMS',
        
        // * - обязательные поля
        argument: {
            // *Логин1
            login: 'Agent',
            
            // *Логин2
            login2: 'Иванов И.И.',
            
            // *Пароль пользователя закодированный в SHA1 (формат фабулы)
            sha1: 'a9de7c...',
            
            // Сообщение
            msg: 'lorem ipsum',
            
            // *Номер телефона
            tel: '+7 100 200 30 40'
        }
    })
);
